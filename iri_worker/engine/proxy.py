"""Perceptual proxy: the automated alignment score of the paper (section 3).

An IRI counts as *aligned* when a perceptual metric finds it at least as close
to its target as to the seed it started from:

    aligned_i = d(IRI_i, target_i) <= d(IRI_i, seed_i)      (ties count aligned)

``d`` is a DISTANCE (0 = identical). The metrics never look at the inverted
network: a deep-feature distance computed with the very network that defines
the IRIs would be circular (IRIs match its features by construction).

Metrics (``PROXY_METRICS``):

* ``ssim``    : 1 - SSIM (Gaussian window 11, sigma 1.5, data_range 1), per image.
* ``ms_ssim`` : 1 - MS-SSIM (5 scales, standard weights, data_range 1). MS-SSIM
                needs the smaller image side > 160 px (four 2x downsamplings of
                an 11-px window); smaller inputs are first upsampled bilinearly
                to 176 px on the smaller side (aspect kept), so it works at 32 px.
                The value then describes the upsampled images.
* ``lpips``   : LPIPS (AlexNet, v0.1 heads). Only where the optional ``lpips``
                package is installed AND torchvision's AlexNet ImageNet weights
                are already in the torch hub cache; this never downloads. Else
                ``RuntimeError`` (offline hosts: use ``ssim`` or ``ms_ssim``).

The SSIM maths is pytorch-msssim's (same window, constants and scales; the
tests check the values agree), re-written for two reasons: its separable
Gaussian blur is a grouped convolution, slow on CPU, done here as two matmuls
with a band matrix; and its ``relu(cs) ** w`` has an infinite gradient at 0,
while the adversarial regulariser backpropagates through MS-SSIM: here a
non-positive scale contributes exactly 0 with gradient 0.
"""

from __future__ import annotations

import functools
import os

import torch
import torch.nn.functional as F
from pytorch_msssim.ssim import _fspecial_gauss_1d

__all__ = ["PROXY_METRICS", "perceptual_distance", "proxy_alignment"]

PROXY_METRICS: tuple[str, ...] = ("ssim", "ms_ssim", "lpips")

_WIN_SIZE, _WIN_SIGMA = 11, 1.5
_MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MS_SSIM_MIN_SIDE = 176  # > (11 - 1) * 2**4 = 160, the smallest side MS-SSIM accepts

_LPIPS_MISSING = (
    "LPIPS needs the AlexNet/VGG backbone weights in the torch hub cache; they are not here. "
    "Use ssim or ms_ssim."
)


@functools.lru_cache(maxsize=32)
def _gauss_matrix(n: int, device: str, dtype: torch.dtype) -> torch.Tensor:
    """(n-10, n) band matrix: a 'valid' 1-D Gaussian filter (11 taps, sigma 1.5) as a matmul."""
    taps = _fspecial_gauss_1d(_WIN_SIZE, _WIN_SIGMA).flatten()
    matrix = torch.zeros(n - _WIN_SIZE + 1, n, dtype=torch.float64)
    for i in range(n - _WIN_SIZE + 1):
        matrix[i, i:i + _WIN_SIZE] = taps
    return matrix.to(device=device, dtype=dtype)


def _gaussian_filter(x: torch.Tensor) -> torch.Tensor:
    """pytorch-msssim's separable 'valid' Gaussian blur, as two matmuls (CPU grouped convs are slow).

    Like the library, a side shorter than the window is left unsmoothed.
    """
    height, width = x.shape[-2:]
    if height >= _WIN_SIZE:
        x = torch.matmul(_gauss_matrix(height, str(x.device), x.dtype), x)
    if width >= _WIN_SIZE:
        x = torch.matmul(x, _gauss_matrix(width, str(x.device), x.dtype).t())
    return x


def _ssim(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(SSIM, contrast-structure) per image and channel, (B, C) each; pytorch-msssim's formula."""
    c1, c2 = 0.01**2, 0.03**2  # (K * data_range)^2 with data_range 1
    batch = x.shape[0]
    blurred = _gaussian_filter(torch.cat([x, y, x * x, y * y, x * y]))
    mu1, mu2, xx, yy, xy = blurred.split(batch)
    mu1_sq, mu2_sq, mu1_mu2 = mu1.pow(2), mu2.pow(2), mu1 * mu2
    sigma1_sq, sigma2_sq, sigma12 = xx - mu1_sq, yy - mu2_sq, xy - mu1_mu2
    cs_map = (2 * sigma12 + c2) / (sigma1_sq + sigma2_sq + c2)
    ssim_map = ((2 * mu1_mu2 + c1) / (mu1_sq + mu2_sq + c1)) * cs_map
    return ssim_map.flatten(2).mean(-1), cs_map.flatten(2).mean(-1)


def _safe_pow(value: torch.Tensor, exponent: float) -> torch.Tensor:
    """``relu(value) ** exponent`` with a finite gradient (0 where value <= 0)."""
    positive = value > 0
    return torch.where(positive, value.clamp_min(1e-12) ** exponent, torch.zeros_like(value))


def ssim_similarity(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SSIM per image, (B,), averaged over channels; differentiable in x and y."""
    value, _ = _ssim(x.float(), y.float())
    return value.mean(dim=1)


def _upsample_for_ms_ssim(x: torch.Tensor) -> torch.Tensor:
    height, width = x.shape[-2:]
    if min(height, width) >= MS_SSIM_MIN_SIDE:
        return x
    scale = MS_SSIM_MIN_SIDE / min(height, width)
    size = (max(MS_SSIM_MIN_SIDE, round(height * scale)), max(MS_SSIM_MIN_SIDE, round(width * scale)))
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def ms_ssim_similarity(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MS-SSIM per image, (B,); small images upsampled first (module docstring)."""
    x, y = _upsample_for_ms_ssim(x.float()), _upsample_for_ms_ssim(y.float())
    factors = []
    for level, weight in enumerate(_MS_WEIGHTS):
        ssim_c, cs_c = _ssim(x, y)
        if level < len(_MS_WEIGHTS) - 1:
            factors.append(_safe_pow(cs_c, weight))
            padding = [s % 2 for s in x.shape[2:]]
            x = F.avg_pool2d(x, kernel_size=2, padding=padding)
            y = F.avg_pool2d(y, kernel_size=2, padding=padding)
        else:
            factors.append(_safe_pow(ssim_c, weight))
    return torch.stack(factors).prod(dim=0).mean(dim=1)


def _lpips_weights_present(net: str = "alex") -> bool:
    checkpoints = os.path.join(torch.hub.get_dir(), "checkpoints")
    prefix = {"alex": "alexnet-", "vgg": "vgg16-"}[net]
    try:
        return any(name.startswith(prefix) for name in os.listdir(checkpoints))
    except OSError:
        return False


def lpips_available() -> bool:
    """True where LPIPS can run offline: the ``lpips`` package and AlexNet weights are local."""
    try:
        import lpips  # noqa: F401
    except ImportError:
        return False
    return _lpips_weights_present("alex")


@functools.lru_cache(maxsize=4)
def _lpips_model(device: str):
    """The LPIPS(AlexNet) metric, built only from local files (never downloads)."""
    try:
        import lpips  # optional dependency, not in requirements.txt
    except ImportError as error:
        raise RuntimeError(_LPIPS_MISSING) from error
    if not _lpips_weights_present("alex"):
        raise RuntimeError(_LPIPS_MISSING)
    model = lpips.LPIPS(net="alex", verbose=False).eval().requires_grad_(False)
    return model.to(device)


def lpips_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """LPIPS per image, (B,), inputs in [0, 1]; RuntimeError when unavailable offline."""
    model = _lpips_model(str(x.device))
    return model(x.float(), y.float(), normalize=True).flatten()


def check_metric(metric: str) -> None:
    """Raise ``ValueError`` (listing the valid names) unless ``metric`` is known."""
    if metric not in PROXY_METRICS:
        raise ValueError(f"Unknown proxy metric '{metric}'. Available: {', '.join(PROXY_METRICS)}.")


def perceptual_distance(x: torch.Tensor, y: torch.Tensor, metric: str) -> torch.Tensor:
    """Distance per image between two batches, (B,), float32; 0 = identical.

    ``x``, ``y``: float (B, 3, H, W) in [0, 1], same shape and device.
    ``metric`` in ``PROXY_METRICS`` (see the module docstring for each one).
    Differentiable for ``ssim`` and ``ms_ssim`` (used by the adversarial loss).
    """
    check_metric(metric)
    if x.dim() != 4 or x.shape != y.shape:
        raise ValueError(
            f"x and y must be (B, C, H, W) batches of one shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if metric == "ssim":
        return 1.0 - ssim_similarity(x, y)
    if metric == "ms_ssim":
        return 1.0 - ms_ssim_similarity(x, y)
    return lpips_distance(x, y)


def proxy_alignment(
    iris: torch.Tensor, targets: torch.Tensor, seeds: torch.Tensor, metric: str
) -> dict[str, torch.Tensor]:
    """The paper's automated alignment test for each IRI.

    ``iris``, ``targets``, ``seeds``: float (B, 3, H, W) in [0, 1] (pass the
    seeds CLIPPED to [0, 1], as stored). A (3, H, W) seed is shared by all.
    Returns ``{"aligned": bool (B,), "to_target": (B,), "to_seed": (B,)}`` on
    CPU, distances per ``perceptual_distance``; ``aligned`` = to_target <=
    to_seed. The share aligned is ``result["aligned"].float().mean()``.
    """
    if seeds.dim() == 3:
        seeds = seeds.unsqueeze(0).expand_as(iris)
    with torch.no_grad():
        to_target = perceptual_distance(iris, targets.to(iris.device), metric)
        to_seed = perceptual_distance(iris, seeds.to(iris.device), metric)
    return {"aligned": (to_target <= to_seed).cpu(), "to_target": to_target.cpu(), "to_seed": to_seed.cpu()}

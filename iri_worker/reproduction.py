"""The paper's central result on Fashion-MNIST, in pure PyTorch (no Django, no printing).

Nanda et al. (AAAI 2023) find that IRIs of a standard network look like noise to people, IRIs of an
adversarially trained network look like their targets, and that the adversarial regularizer makes
every network look unaligned. This module trains the two networks (a small ResNet, standard and
L2-PGD adversarially trained), wraps them as engine backbones and measures the perceptual proxy
(share of IRIs closer to their target than to their seed) for each (model x loss).

Only this file's callers (the ``reproduce`` command) touch files other than the dataset and the
weights cache given to ``run_experiment``.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
# Fashion-MNIST statistics on [0, 1] (grey replicated to 3 channels), used as the backbone's normalisation.
MEAN, STD = (0.286,) * 3, (0.353,) * 3
MISSING_DATA = (
    "Fashion-MNIST was not found in {root}. Install Debian's package `dataset-fashion-mnist` "
    "(apt-get install dataset-fashion-mnist), pass the folder holding {files} with --data-dir, or, where a "
    "network exists, add --download."
)


@dataclass(frozen=True)
class ReproductionConfig:
    """Everything that determines the experiment; ``key()`` names the weights cache."""

    train_images: int = 12_000
    epochs: int = 2
    batch_size: int = 128
    lr: float = 2e-3
    width: int = 16
    image_size: int = 32
    # L2 PGD adversarial training (Madry et al.), in [0, 1] pixel units over the 3 x 32 x 32 input.
    eps: float = 2.5
    attack_steps: int = 3
    attack_step_size: float = 1.5  # about 2 * eps / attack_steps
    # Random 2-pixel shifts and horizontal flips while training: in the paper's CIFAR table the same
    # L2 training with its usual augmentations doubled the proxy alignment (76.5 vs 30.0 for ResNet18).
    augment: bool = True
    eval_images: int = 1000
    eval_attack_steps: int = 10
    # IRIs
    targets: int = 30
    iri_steps: int = 1000
    iri_step_size: float = 1.0
    # "photo": each IRI starts from the test image of another class (the paper's 2AFC foil is the seed);
    # or an engine seed kind: "super-noise" (N(0, 1) per pixel, clipped) is what the paper's proxy sweeps
    # start from, but 1000 steps leave a small model's IRIs closer to that noise than to any target.
    seed_kind: str = "photo"
    # rep - c * (1 - SSIM(x, x_t)), c adaptive (the engine's recipe); SSIM at the image's own size is
    # much cheaper per step than MS-SSIM, which upsamples 32 px images.
    adversarial_recipe: str = "adv_ssim"
    rng_seed: int = 0

    def training_dict(self) -> dict:
        keys = ["train_images", "epochs", "batch_size", "lr", "width", "image_size", "eps", "attack_steps",
                "attack_step_size", "augment", "rng_seed"]
        return {k: getattr(self, k) for k in keys}

    def key(self) -> str:
        blob = json.dumps(self.training_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


QUICK = ReproductionConfig()
FULL = ReproductionConfig(
    train_images=60_000, epochs=10, eval_images=2000, attack_steps=7, attack_step_size=0.9,
    targets=100, iri_steps=3000, iri_step_size=1.0, adversarial_recipe="adv_ms_ssim",
)


# --------------------------------------------------------------------------- data


def load_fashion_mnist(root: str | Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 (N, 28, 28), labels long (N,)) from the idx files of ``split`` ("train"/"test")."""
    root = Path(root)
    image_file, label_file = (root / name for name in FILES[split])
    if not image_file.exists() or not label_file.exists():
        raise FileNotFoundError(MISSING_DATA.format(root=root, files=", ".join(FILES[split])))
    with gzip.open(image_file) as fh:
        images = np.frombuffer(fh.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(label_file) as fh:
        labels = np.frombuffer(fh.read(), np.uint8, offset=8)
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def to_input(images: torch.Tensor, size: int = 32) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float (N, 3, size, size) in [0, 1]: zero-padded to 32 (the black background
    continues), resized if another size is asked, grey repeated to 3 channels (the engine works on RGB)."""
    x = images.float().div(255).unsqueeze(1)
    x = F.pad(x, (2, 2, 2, 2))
    if size != 32:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.expand(-1, 3, -1, -1).contiguous()


# --------------------------------------------------------------------------- model


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class SmallResNet(nn.Module):
    """A ResNet with three stages of one basic block (widths w, 2w, 4w); penultimate = ``avgpool``."""

    def __init__(self, width: int = 16, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.layer1 = BasicBlock(width, width, 1)
        self.layer2 = BasicBlock(width, 2 * width, 2)
        self.layer3 = BasicBlock(2 * width, 4 * width, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x).flatten(1))


def normalized(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The classifier on [0, 1] inputs (normalisation inside, as the engine's backbone does it)."""
    device = next(model.parameters()).device
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    return lambda x: model((x - mean) / std)


# --------------------------------------------------------------------------- attack and training


def augment(x: torch.Tensor, generator: torch.Generator, shift: int = 2) -> torch.Tensor:
    """Each image shifted by up to ``shift`` pixels (zero fill, like the black background) and
    flipped left-right with probability 1/2; the draws come from ``generator`` (on the CPU)."""
    n, _, h, w = x.shape
    dy, dx = (torch.randint(-shift, shift + 1, (n,), generator=generator).tolist() for _ in range(2))
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    padded = F.pad(torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x), (shift,) * 4)
    return torch.stack([padded[i, :, shift + dy[i]:shift + dy[i] + h, shift + dx[i]:shift + dx[i] + w]
                        for i in range(n)])


def pgd_l2(classify, x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int, step_size: float,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Untargeted L2 PGD (Madry et al.): ascend the cross-entropy in normalised-gradient steps, project
    onto the eps-ball around ``x`` and the [0, 1] box. A random start inside the ball when a generator
    is given (training), none otherwise (evaluation)."""
    delta = torch.zeros_like(x)
    if generator is not None:  # drawn on the CPU so a run is the same on every device
        delta = torch.randn(x.shape, generator=generator)
        delta = delta / delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * eps * torch.rand(
            (x.shape[0], 1, 1, 1), generator=generator)
        delta = delta.to(x.device)
    for _ in range(steps):
        delta = delta.detach().requires_grad_(True)
        loss = F.cross_entropy(classify((x + delta).clamp(0, 1)), y)
        (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            delta = delta + step_size * grad / (grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1) + 1e-12)
            norm = delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
            delta = delta * (eps / norm.clamp_min(eps))
            delta = (x + delta).clamp(0, 1) - x
    return (x + delta).detach()


def train_model(config: ReproductionConfig, x: torch.Tensor, y: torch.Tensor, *, adversarial: bool,
                log: Callable[[str], None] = lambda _: None) -> SmallResNet:
    """Train a SmallResNet with Adam (one-cycle schedule); on PGD examples when ``adversarial``."""
    generator = torch.Generator().manual_seed(config.rng_seed + (1 if adversarial else 0))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.rng_seed)
        model = SmallResNet(config.width).to(x.device)
    classify = normalized(model)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    batches = (len(x) + config.batch_size - 1) // config.batch_size
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, config.lr, total_steps=config.epochs * batches)
    for epoch in range(config.epochs):
        order = torch.randperm(len(x), generator=generator)
        seen = correct = 0
        for b in range(batches):
            idx = order[b * config.batch_size:(b + 1) * config.batch_size].to(x.device)
            xb, yb = x[idx], y[idx]
            if config.augment:
                xb = augment(xb, generator)
            if adversarial:
                model.eval()  # attack the current model with fixed BN statistics
                xb = pgd_l2(classify, xb, yb, eps=config.eps, steps=config.attack_steps,
                            step_size=config.attack_step_size, generator=generator)
            model.train()
            logits = classify(xb)
            loss = F.cross_entropy(logits, yb)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            seen += len(idx)
            correct += int((logits.argmax(1) == yb).sum())
        log(f"{'robust' if adversarial else 'standard'} epoch {epoch + 1}/{config.epochs}: "
            f"train accuracy {correct / seen:.3f}")
    return model.eval().requires_grad_(False)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float = 0.0, steps: int = 0,
             batch_size: int = 250) -> float:
    """Share classified correctly, on clean inputs or under L2 PGD (eps, steps, step 2.5·eps/steps)."""
    classify = normalized(model.eval())
    correct = 0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        if eps > 0:
            with torch.enable_grad():
                xb = pgd_l2(classify, xb, yb, eps=eps, steps=steps, step_size=2.5 * eps / steps)
        with torch.no_grad():
            correct += int((classify(xb).argmax(1) == yb).sum())
    return correct / len(x)


# --------------------------------------------------------------------------- IRIs and the proxy


def as_backbone(model: nn.Module, name: str, image_size: int = 32):
    """The trained classifier as an engine backbone (representation: the pooled penultimate layer)."""
    from iri_worker.engine import Backbone

    model.eval().requires_grad_(False)
    return Backbone(name, model, image_size, MEAN, STD, default_layer="avgpool")


def iri_proxy(backbone, targets: torch.Tensor, *, recipe, config: ReproductionConfig,
              metrics: tuple[str, ...], seeds: torch.Tensor | None = None) -> dict:
    """Generate one IRI per target with the engine and return the proxy alignment per metric:
    share of IRIs with d(IRI, target) <= d(IRI, seed), d = 1 - similarity."""
    from iri_worker import engine

    spec = engine.InversionSpec(
        backbone=backbone.name, layer=backbone.default_layer, recipe=recipe,
        seed_kind="super-noise" if seeds is not None else config.seed_kind,
        steps=config.iri_steps, step_size=config.iri_step_size, image_size=config.image_size,
        rng_seed=config.rng_seed,
    )
    started = time.monotonic()
    result = engine.invert(spec, targets, backbone=backbone, seeds=seeds, device=targets.device)
    # Judge the images as people would see them: quantised to 8 bits, like the stored PNGs.
    iris, seeds = (t.mul(255).round().div(255) for t in (result.images, result.seeds.clamp(0, 1)))
    out = {"final_loss": round(float(result.losses.mean()), 4), "seconds": round(time.monotonic() - started, 1)}
    if result.adversarial_c is not None:
        out["adversarial_c"] = round(float(result.adversarial_c), 4)
    for metric in metrics:
        try:
            aligned = engine.proxy_alignment(iris, targets, seeds, metric)["aligned"]
        except RuntimeError:  # LPIPS without its weights here
            continue
        out[metric] = round(float(aligned.float().mean()), 4)
    return out


def _cached_model(config: ReproductionConfig, cache: Path, x, y, *, adversarial: bool, log) -> tuple[SmallResNet, bool]:
    path = cache / f"fmnist-resnet-{'robust' if adversarial else 'standard'}-{config.key()}.pt"
    model = SmallResNet(config.width)
    if path.exists():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model.to(x.device).eval().requires_grad_(False), True
    model = train_model(config, x, y, adversarial=adversarial, log=log)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, tmp)
    tmp.replace(path)  # a crash mid-write never leaves a half file under the real name
    return model, False


def run_experiment(config: ReproductionConfig, *, data_dir: str | Path = FASHION_MNIST_DIR,
                   cache_dir: str | Path, metrics: tuple[str, ...] = ("ssim", "ms_ssim"),
                   adversarial_recipe=None, device: str = "cpu", log: Callable[[str], None] = lambda _: None) -> dict:
    """Train (or load from ``cache_dir``) both models, make IRIs under each loss, measure everything.

    Returns a JSON-able dict: the config, per model its clean and robust accuracy, and per
    (model x loss) the proxy alignment for each metric. ``adversarial_recipe`` (a recipe name or term
    list for the engine) is skipped when None.
    """
    started = time.monotonic()
    cache = Path(cache_dir)
    x_train, y_train = load_fashion_mnist(data_dir, "train")
    x_test, y_test = load_fashion_mnist(data_dir, "test")
    g = torch.Generator().manual_seed(config.rng_seed)
    pick = torch.randperm(len(x_train), generator=g)[:config.train_images]
    x_train, y_train = to_input(x_train[pick], config.image_size).to(device), y_train[pick].to(device)
    x_eval = to_input(x_test[:config.eval_images], config.image_size).to(device)
    y_eval = y_test[:config.eval_images].to(device)
    # Targets: test images not used for evaluation, one class after another (un-augmented, as the paper advises).
    rest = torch.arange(config.eval_images, len(x_test))
    order = rest[torch.argsort(y_test[rest] * len(x_test) + rest)]
    per_class = -(-config.targets // 10)
    chosen = torch.cat([order[y_test[order] == c][:per_class] for c in range(10)])[:config.targets]
    targets = to_input(x_test[chosen], config.image_size).to(device)
    # A photo seed: the target `per_class` places further on, i.e. an image of the next class.
    seeds = targets.roll(per_class, dims=0) if config.seed_kind == "photo" else None

    losses = {"reg_free": "reg_free"}
    if adversarial_recipe is not None:
        losses["adversarial"] = adversarial_recipe
    report: dict = {"config": dataclasses.asdict(config), "dataset": "Fashion-MNIST", "device": device,
                    "models": {}, "alignment": {}}
    for label, adversarial in (("standard", False), ("robust", True)):
        t0 = time.monotonic()
        model, cached = _cached_model(config, cache, x_train, y_train, adversarial=adversarial, log=log)
        log(f"{label}: {'loaded from cache' if cached else 'trained'} in {time.monotonic() - t0:.0f} s")
        report["models"][label] = {
            "clean_accuracy": round(accuracy(model, x_eval, y_eval), 4),
            "robust_accuracy": round(accuracy(model, x_eval, y_eval, eps=config.eps, steps=config.eval_attack_steps), 4),
            "cached": cached,
        }
        backbone = as_backbone(model, f"fmnist_resnet_{label}", config.image_size)
        for loss_label, recipe in losses.items():
            outcome = iri_proxy(backbone, targets, recipe=recipe, config=config, metrics=metrics, seeds=seeds)
            report["alignment"][f"{label}/{loss_label}"] = outcome
            log(f"{label} x {loss_label}: {outcome}")
    report["seconds"] = round(time.monotonic() - started, 1)
    return report

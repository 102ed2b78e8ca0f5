"""The paper's central result on Fashion-MNIST, in pure PyTorch (no Django, no printing).

Nanda et al. (AAAI 2023) find that IRIs of a standard network look like noise to people, IRIs of an
adversarially trained network look like their targets, and that the adversarial regularizer makes
every network look unaligned. This module trains the two networks (a small ResNet, standard and
L2-PGD adversarially trained), wraps them as engine backbones and measures the perceptual proxy
(share of IRIs closer to their target than to their seed) for each (model x loss).

The steps are small functions that ``run_experiment`` puts together and that tests call with small
sizes: ``experiment_data`` (training subset, evaluation images, targets and their photo seeds),
``model_get`` (train, or load from the weights cache), ``iri_set_make`` (one IRI per target with the
engine), ``iri_set_measure`` (the report's numbers) and ``comparison_figure`` (a picture for people).
Only this file's callers (the ``reproduce`` command) touch files other than the dataset and the
weights cache given to ``run_experiment``.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from iri_worker.engine.images import eight_bit  # images as people see them (8 bits, like the stored PNGs)

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
# The engine backbone name of the architecture (both models; their weights' hashes tell them apart).
BACKBONE = "fmnist_resnet"
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


# --------------------------------------------------------------------------- one run: data, models, IRI sets


@dataclass(frozen=True)
class ExperimentData:
    """The tensors of one run, on its device. ``targets`` (one class after another, un-augmented test images
    not used for evaluation, as the paper advises) with their classes and test-set indices; ``seeds``: per target
    the test image of the next class (``seed_kind`` "photo": the 2AFC foil is the seed), or None for a noise kind."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_eval: torch.Tensor
    y_eval: torch.Tensor
    targets: torch.Tensor
    target_labels: torch.Tensor
    target_indices: torch.Tensor
    seeds: torch.Tensor | None


def experiment_data(config: ReproductionConfig, *, data_dir: str | Path = FASHION_MNIST_DIR,
                    device: str = "cpu") -> ExperimentData:
    """The training subset (drawn with ``config.rng_seed``), the evaluation images and the IRI targets."""
    x_train, y_train = load_fashion_mnist(data_dir, "train")
    x_test, y_test = load_fashion_mnist(data_dir, "test")
    g = torch.Generator().manual_seed(config.rng_seed)
    pick = torch.randperm(len(x_train), generator=g)[:config.train_images]
    rest = torch.arange(config.eval_images, len(x_test))
    order = rest[torch.argsort(y_test[rest] * len(x_test) + rest)]
    per_class = -(-config.targets // 10)
    chosen = torch.cat([order[y_test[order] == c][:per_class] for c in range(10)])[:config.targets]
    targets = to_input(x_test[chosen], config.image_size).to(device)
    return ExperimentData(
        x_train=to_input(x_train[pick], config.image_size).to(device), y_train=y_train[pick].to(device),
        x_eval=to_input(x_test[:config.eval_images], config.image_size).to(device),
        y_eval=y_test[:config.eval_images].to(device),
        targets=targets, target_labels=y_test[chosen], target_indices=chosen,
        # A photo seed: the target `per_class` places further on, i.e. an image of the next class.
        seeds=targets.roll(per_class, dims=0) if config.seed_kind == "photo" else None,
    )


@dataclass(frozen=True)
class TrainedModel:
    """A trained classifier with what identifies it: ``label`` "standard" | "robust"; ``training`` "standard" |
    "adversarial" (what the alignment report shows as its conditions' training) and ``training_details`` (with
    the attack's settings); ``weights_sha256`` (of its saved state dict); whether it came from the cache."""

    label: str
    training: str
    training_details: str
    model: SmallResNet
    weights_sha256: str
    cached: bool


def training_details(config: ReproductionConfig, *, adversarial: bool) -> str:
    """How a model was trained, in full."""
    if not adversarial:
        return "standard training"
    return (f"adversarial training (L2 PGD, eps {config.eps:g}, {config.attack_steps} steps of "
            f"{config.attack_step_size:g})")


def model_get(config: ReproductionConfig, data: ExperimentData, *, adversarial: bool, cache_dir: str | Path | None,
              log: Callable[[str], None] = lambda _: None) -> TrainedModel:
    """Load the model from ``cache_dir`` (named by ``config.key()``) or train it (and cache it there)."""
    label = "robust" if adversarial else "standard"
    path = Path(cache_dir) / f"fmnist-resnet-{label}-{config.key()}.pt" if cache_dir is not None else None
    device = data.x_train.device
    if path is not None and path.exists():
        blob = path.read_bytes()
        model = SmallResNet(config.width)
        model.load_state_dict(torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True))
        model = model.to(device).eval().requires_grad_(False)
        cached = True
    else:
        model = train_model(config, data.x_train, data.y_train, adversarial=adversarial, log=log)
        buffer = io.BytesIO()
        torch.save({k: v.cpu() for k, v in model.state_dict().items()}, buffer)
        blob = buffer.getvalue()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(blob)
            tmp.replace(path)  # a crash mid-write never leaves a half file under the real name
        cached = False
    return TrainedModel(label, "adversarial" if adversarial else "standard",
                        training_details(config, adversarial=adversarial), model, hashlib.sha256(blob).hexdigest(), cached)


def as_backbone(model: nn.Module, name: str = BACKBONE, image_size: int = 32, weights_sha256: str | None = None):
    """The trained classifier as an engine backbone (representation: the pooled penultimate layer)."""
    from iri_worker.engine import Backbone

    model.eval().requires_grad_(False)
    return Backbone(name, model, image_size, MEAN, STD, default_layer="avgpool", checkpoint_sha256=weights_sha256)


@dataclass(frozen=True)
class IriSet:
    """The IRIs of one (model x loss): ``spec`` as run (JSON-able, resolved), the engine's ``result``, and
    the IRIs and seeds in 8 bits (what is stored, shown and judged)."""

    model: TrainedModel
    loss: str
    spec: dict
    result: object  # engine.InversionResult
    iris: torch.Tensor
    seeds: torch.Tensor
    seconds: float


def iri_set_make(model: TrainedModel, data: ExperimentData, *, loss: str, recipe, config: ReproductionConfig) -> IriSet:
    """One IRI per target with the engine, from the data's seeds (photos) or ``config.seed_kind`` noise."""
    from iri_worker import engine

    backbone = as_backbone(model.model, BACKBONE, config.image_size, model.weights_sha256)
    spec = engine.InversionSpec(
        backbone=BACKBONE, layer=backbone.default_layer, recipe=recipe, seed_kind=config.seed_kind,
        steps=config.iri_steps, step_size=config.iri_step_size, image_size=config.image_size,
        rng_seed=config.rng_seed, checkpoint_sha256=model.weights_sha256,
    )
    started = time.monotonic()
    result = engine.invert(spec, data.targets, backbone=backbone, seeds=data.seeds, device=data.targets.device)
    return IriSet(model, loss, spec.to_dict(backbone), result, eight_bit(result.images), eight_bit(result.seeds),
                  round(time.monotonic() - started, 1))


def iri_set_measure(iri_set: IriSet, targets: torch.Tensor, *, metrics: tuple[str, ...]) -> dict:
    """The report's cell for one IRI set: per metric (``ssim``, ``ms_ssim``, ``lpips`` where its weights are
    here) the proxy alignment (share of IRIs with d(IRI, target) <= d(IRI, seed), d = 1 - similarity) and
    ``<metric>_to_target``, the mean d(IRI, target). None of these uses the network's own features."""
    from iri_worker import engine

    result = iri_set.result
    out = {"final_loss": round(float(result.losses.mean()), 4), "seconds": iri_set.seconds}
    if result.adversarial_c is not None:
        out["adversarial_c"] = round(float(result.adversarial_c), 4)
    targets = eight_bit(targets)
    for metric in metrics:
        try:
            proxy = engine.proxy_alignment(iri_set.iris, targets, iri_set.seeds, metric)
        except RuntimeError:  # LPIPS without its weights here
            continue
        out[metric] = round(float(proxy["aligned"].float().mean()), 4)
        out[f"{metric}_to_target"] = round(float(proxy["to_target"].mean()), 4)
    return out


@dataclass(frozen=True)
class Reproduction:
    """What ``run_experiment`` made: the JSON-able ``report``, the data, both models and the four IRI sets
    (standard, robust) x (reg_free[, adversarial]), in that order."""

    report: dict
    data: ExperimentData
    models: list[TrainedModel]
    sets: list[IriSet]


def run_experiment(config: ReproductionConfig, *, data_dir: str | Path = FASHION_MNIST_DIR,
                   cache_dir: str | Path | None, metrics: tuple[str, ...] = ("ssim", "ms_ssim"),
                   adversarial_recipe=None, device: str = "cpu", log: Callable[[str], None] = lambda _: None,
                   measure_accuracy: bool = True) -> Reproduction:
    """Train (or load from ``cache_dir``; None: train, cache nothing) both models, make IRIs under each loss,
    measure everything.

    The report (JSON-able): the config, per model its clean and robust accuracy (unless ``measure_accuracy`` is
    False), and per "model/loss" the proxy alignment for each metric (``iri_set_measure``). ``adversarial_recipe``
    (a recipe name or term list for the engine) is skipped when None.
    """
    from iri_worker import engine

    engine.keep_freed_memory()  # once, as a worker process does: training and the IRIs reuse freed memory
    started = time.monotonic()
    data = experiment_data(config, data_dir=data_dir, device=device)
    losses = {"reg_free": "reg_free"}
    if adversarial_recipe is not None:
        losses["adversarial"] = adversarial_recipe
    report: dict = {"config": dataclasses.asdict(config), "dataset": "Fashion-MNIST", "device": device,
                    "models": {}, "alignment": {}}
    models, sets = [], []
    for adversarial in (False, True):
        t0 = time.monotonic()
        trained = model_get(config, data, adversarial=adversarial, cache_dir=cache_dir, log=log)
        models.append(trained)
        label = trained.label
        log(f"{label}: {'loaded from cache' if trained.cached else 'trained'} in {time.monotonic() - t0:.0f} s")
        report["models"][label] = {"training": trained.training_details, "weights_sha256": trained.weights_sha256,
                                   "cached": trained.cached}
        if measure_accuracy:
            report["models"][label]["clean_accuracy"] = round(accuracy(trained.model, data.x_eval, data.y_eval), 4)
            report["models"][label]["robust_accuracy"] = round(accuracy(
                trained.model, data.x_eval, data.y_eval, eps=config.eps, steps=config.eval_attack_steps), 4)
        for loss, recipe in losses.items():
            iri_set = iri_set_make(trained, data, loss=loss, recipe=recipe, config=config)
            sets.append(iri_set)
            report["alignment"][f"{label}/{loss}"] = cell = iri_set_measure(iri_set, data.targets, metrics=metrics)
            log(f"{label} x {loss}: {cell}")
    report["seconds"] = round(time.monotonic() - started, 1)
    return Reproduction(report, data, models, sets)


def comparison_figure(reproduction: Reproduction, *, loss: str = "reg_free", rows: int = 3, scale: int = 4,
                      gap: int = 4) -> torch.Tensor:
    """A picture for people, (3, H, W) in [0, 1]: per row a target | the standard model's IRI | the robust
    model's IRI (both under ``loss``) | the seed both started from, each enlarged ``scale`` times (nearest
    neighbour, so pixels stay pixels), white gaps between. The rows are targets evenly spaced in the target list
    (one class after another), not picked by how they look."""
    sets = {(s.model.label, s.loss): s for s in reproduction.sets}
    standard, robust = sets[("standard", loss)], sets[("robust", loss)]
    columns = [eight_bit(reproduction.data.targets).cpu(), standard.iris, robust.iris, standard.seeds]
    n = columns[0].shape[0]
    picks = [k * n // rows for k in range(min(rows, n))]
    size = columns[0].shape[-1] * scale
    figure = torch.ones(3, len(picks) * size + (len(picks) + 1) * gap, len(columns) * size + (len(columns) + 1) * gap)
    for r, i in enumerate(picks):
        for c, images in enumerate(columns):
            big = F.interpolate(images[i:i + 1].float(), scale_factor=scale, mode="nearest")[0]
            top, left = gap + r * (size + gap), gap + c * (size + gap)
            figure[:, top:top + size, left:left + size] = big
    return figure

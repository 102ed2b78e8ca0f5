"""The reproduction's steps (data, models, IRI sets, the proxy's numbers, the figure) and ``run_experiment``."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from iri_worker.engine.images import eight_bit  # images as people see them (8 bits, like the stored PNGs)

from .data import BACKBONE, FASHION_MNIST_DIR, MEAN, STD, ReproductionConfig, load_fashion_mnist, to_input
from .training import SmallResNet, accuracy, train_model


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

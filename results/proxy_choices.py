"""The proxy's choice on each trial (SSIM, MS-SSIM, LPIPS): computed once and stored, then read by the report.

trial_proxy_choices_compute() is the only code of the report that touches torch (imported inside the function);
trial_proxy_correct() reads the stored choices, or the IRI's own verdict where a trial's foil is its seed.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from django.db import transaction

from backend.exceptions import ApplicationError
from surveys.models import Survey, Trial

from .models import TrialProxyChoice
from .selectors import trial_proxy_choice_table
from .survey_data import SurveyData

PROXY_METRICS = ("ssim", "ms_ssim", "lpips")
UNKNOWN_METRIC = "Unknown proxy metric '{metric}'; choose one of: {choices}."


def trial_proxy_correct(*, data: SurveyData, metrics: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Per trial and metric: 1 = the proxy chose the target, 0 = another option, -1 = unknown."""
    trials = data.trials
    cached = trial_proxy_choice_table(survey=data.survey, metrics=metrics)
    n = trials["id"].size
    # Option images exist for 2AFC and clustering only (a classification's options are categories).
    has_images = trials["n_options"] <= trials["options"].shape[1]
    target_ids = np.where(has_images, trials["options"][np.arange(n), np.minimum(trials["target_option"], 2)], -1) if n else np.zeros(0, dtype=np.int64)
    # 2AFC with the IRI's seed as the foil: the IRI's stored verdict answers the trial exactly.
    foil_is_seed = (trials["n_options"] == 2) & (trials["seed_image"] >= 0) & (
        ((trials["options"][:, 0] == trials["seed_image"]) & (trials["options"][:, 1] == target_ids))
        | ((trials["options"][:, 1] == trials["seed_image"]) & (trials["options"][:, 0] == target_ids))
    ) if n else np.zeros(0, dtype=bool)
    out = {}
    for metric in metrics:
        values = np.full(n, -1, dtype=np.int64)
        for i in range(n):
            choice = cached[metric].get(int(trials["id"][i]))
            if choice is not None:
                values[i] = int(choice == trials["target_option"][i])
            elif foil_is_seed[i]:
                verdict = (trials["iri_proxy"][i] or {}).get(metric)
                if isinstance(verdict, dict) and verdict.get("aligned") is not None:
                    values[i] = int(bool(verdict["aligned"]))
        if (values >= 0).any():
            out[metric] = values
    return out


def trial_proxy_choices_compute(*, survey: Survey, metric: str, batch_size: int = 32,
                                progress: Callable[[float], None] | None = None) -> int:
    """d(query, option_k) for every main trial of the survey without a cached choice; stores the proxy's choice.

    The proxy picks the closest option; when the target ties with the closest, the target (ties count
    aligned). Returns how many trials were computed; `progress` hears the share done after each batch.
    Raises ApplicationError for an unknown metric and for LPIPS without local weights.
    """
    if metric not in PROXY_METRICS:
        raise ApplicationError(UNKNOWN_METRIC.format(metric=metric, choices=", ".join(PROXY_METRICS)))
    import torch
    import torch.nn.functional as F

    from iri_worker.engine import perceptual_distance, png_bytes_to_tensor

    done = TrialProxyChoice.objects.filter(trial__survey=survey, metric=metric).values_list("trial_id", flat=True)
    trials = list(
        Trial.objects.filter(survey=survey, kind=Trial.Kind.MAIN).exclude(pk__in=done)
        .select_related("query", "option_0", "option_1", "option_2").order_by("id")
    )
    images: dict[int, torch.Tensor] = {}

    def tensor(stored) -> torch.Tensor:
        if stored.pk not in images:
            with stored.file.open("rb") as fh:
                images[stored.pk] = png_bytes_to_tensor(fh.read())
        return images[stored.pk]

    created = []
    for start in range(0, len(trials), batch_size):
        batch = trials[start : start + batch_size]
        xs, ys, owners = [], [], []
        for trial in batch:
            query = tensor(trial.query)
            options = trial.options
            for k, option in enumerate(options):
                y = tensor(option)
                if y.shape != query.shape:
                    y = F.interpolate(y[None], size=query.shape[-2:], mode="bilinear", align_corners=False)[0]
                xs.append(query)
                ys.append(y)
                owners.append((trial, k))
        if not xs:
            continue
        try:
            with torch.no_grad():
                dist = perceptual_distance(torch.stack(xs), torch.stack(ys), metric).tolist()
        except RuntimeError as exc:
            raise ApplicationError(str(exc)) from exc
        per_trial: dict[int, list[float]] = {}
        for (trial, k), d in zip(owners, dist):
            per_trial.setdefault(trial.pk, []).append(float(d))
        for trial in batch:
            d = per_trial[trial.pk]
            choice = trial.target_option if d[trial.target_option] <= min(d) else int(np.argmin(d))
            created.append(TrialProxyChoice(trial=trial, metric=metric, distances=d, choice=choice))
        if progress is not None:
            progress((start + len(batch)) / len(trials))
    with transaction.atomic():
        TrialProxyChoice.objects.bulk_create(created, ignore_conflicts=True)
    return len(created)

"""Writes for surveys: build trials and trial lists from finished IRI sets, enroll participants into reserved
slots, record answers and quality events, finish sessions with an outcome and exclusion flags; erase a participant
on request and drop external IDs after a survey's retention period."""
import io
import itertools
import math
import random
import secrets
import uuid
from datetime import timedelta

import numpy as np
import psycopg
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.text import slugify
from PIL import Image
from rest_framework import status

from backend.exceptions import ApplicationError
from iri_worker.models import IriImage, IriJob, StoredImage
from iri_worker.selectors import VALIDITY_REASONS, iri_validity_failure
from results.alignment import one_sided
from teams.services import audit_record

from ..layouts import TrialShape, option_orders
from ..models import (
    DEFAULT_CLUSTER_INSTRUCTIONS,
    Assignment,
    Participant,
    ParticipantEvent,
    Response,
    Slot,
    Survey,
    Trial,
    TrialList,
)
from ..stimuli import PhotoPool, image_size

NO_FINISHED_SET = "Choose at least one finished IRI set (job status DONE with images)."
SETS_OF_TEAMS = "A survey's IRI sets must all belong to one team."
UNFINISHED_SETS = "These IRI sets are not finished: {names}."
NEEDS_TWO_TARGETS = "The foil rule '{rule}' needs IRI sets with at least two different target photos{where}."
NEEDS_LABELS = (
    "The foil rule 'same_class' needs a class label on every target photo; these have none: {names}. "
    "Set it in the admin (Target photos) or with the `label` field of POST /api/iri/photos."
)
NEEDS_TWO_PER_CLASS = (
    "The foil rule 'same_class' needs at least two target photos of each class in the chosen IRI sets; "
    "these classes have one: {labels}."
)
NEEDS_CLUSTER_TARGETS = (
    "Clustering needs at least 3 target photos with 2 IRIs each (choose two IRI sets made from the same targets, "
    "or one set with two seeds per target)."
)
SLUG_TAKEN = "A survey with the slug '{slug}' exists already."
BAD_SLUG = "The slug may contain only letters, digits, '-' and '_'."
SLUG_TOO_LONG = "The slug may be at most {n} characters long."
BAD_NUMBER = "{field} must be {rule}."
SURVEY_NOT_LIVE = "This study is not open."
SURVEY_FULL = "This study is full: every trial list has all its ratings. Thank you for your interest."
RETURNING_BLOCKED = "You have started this study before; it cannot be taken again."
TRIAL_NOT_ASSIGNED = "This trial is not one of yours."
ALREADY_ANSWERED = "This trial has been answered already."
KEY_REUSED = "This idempotency key was used for another answer."
NOT_FINISHED = "Some answers have not reached the server yet."
NOT_CONSENTED = "Give consent before answering."
SESSION_ENDED = "This session has ended ({status}); no more answers are taken."
UNKNOWN_SESSION = "Unknown session."
BAD_CHOICE = "choice: this trial has {n} options."
BAD_SUBMIT_TO = "turkSubmitTo must be https://www.mturk.com or https://workersandbox.mturk.com."
BAD_SIZE_POLICY = "size_policy must be 'resize' or 'refuse', not '{value}'."
ALL_LEFT_OUT = "The validity filter leaves no IRI in the chosen sets ({reasons}); loosen it or choose other sets."
MIXED_SIZES_REFUSED = (
    "The chosen IRI sets have different image sizes ({sets}) and size_policy is 'refuse': choose sets of one size, "
    "or size_policy 'resize' to show every option at its query's size."
)
MIXED_SIZES_CLUSTER = "A clustering screen shows six IRIs at once, so its sets must share one image size; these differ: {sets}."
POOL_TOO_SMALL = (
    "The {what} trials need {n} natural photos outside the participants' main trials that are never shown together "
    "in a main trial; {found} are available. Add target photos, or ask for fewer {what} trials."
)
ERASE_NEEDS_ONE_ID = "Give exactly one of a Prolific PID or an MTurk worker ID."
DUPLICATE_ENROLL = (
    "This ID has already started this study in another browser or device. Please continue there; if you cannot, "
    "contact the researchers through the platform you came from."
)

# A heartbeat (every 30 s from the browser; at least once a minute in a background tab) keeps the reservation
# this far ahead, up to HOLD_MAX_FACTOR × the survey's time limit after enrollment.
HEARTBEAT_HOLD_S = 300
HOLD_MAX_FACTOR = 2
MTURK_PREVIEW = "ASSIGNMENT_ID_NOT_AVAILABLE"
MTURK_HOSTS = ("https://www.mturk.com", "https://workersandbox.mturk.com")
CLUSTER_REFERENCES = 3
CLUSTER_IRIS_PER_REFERENCE = 2

FINAL = [s for s in Participant.Status.values if s != Participant.Status.ACTIVE]


# ---------------------------------------------------------------------------------------------------------
# Building a survey


def survey_create(
    *,
    slug: str,
    title: str,
    iri_jobs: list[IriJob],
    task_type: str = Survey.TaskType.TWO_AFC,
    foil_rule: str = Survey.FoilRule.SEED,
    cluster_variant: str = Survey.ClusterVariant.RANDOM,
    trials_per_participant: int | None = None,
    ratings_per_list: int = 10,
    catch_trials: int = 0,
    practice_trials: int = 0,
    rng_seed: int = 0,
    size_policy: str = Survey.SizePolicy.RESIZE,
    iri_max_percentile: float | None = None,
    iri_require_label_match: bool = False,
    **settings,
) -> Survey:
    """A DRAFT survey: trials from the IRI sets, split into trial lists, each with N slots per mode (live, pilot).

    2AFC: one main trial per IRI (query = the IRI; options = its target and a foil by `foil_rule`).
    Clustering: screens of 3 references × 2 IRIs each (one Trial row per IRI). Which side an option is shown on
    is decided per participant (surveys.layouts). Catch and practice trials are made of natural photos outside
    the main trials (surveys.stimuli). `settings` are further Survey fields (texts, codes, thresholds, time
    limit, resume policy, quota). What the builder did (resizing, IRIs left out) is in `survey.build_report`.
    """
    _numbers_check(ratings_per_list=ratings_per_list, catch_trials=catch_trials, practice_trials=practice_trials, **settings)
    iris, report = survey_check(
        slug=slug, iri_jobs=iri_jobs, foil_rule=foil_rule, task_type=task_type, size_policy=size_policy,
        iri_max_percentile=iri_max_percentile, iri_require_label_match=iri_require_label_match,
        one_side_max_fraction=settings.get("one_side_max_fraction"),
    )
    if task_type == Survey.TaskType.CLUSTER and "instructions_md" not in settings:
        settings["instructions_md"] = DEFAULT_CLUSTER_INSTRUCTIONS
    rng = random.Random(rng_seed)
    with transaction.atomic():
        survey = Survey.objects.create(
            team_id=iri_jobs[0].team_id,
            slug=slug,
            title=title,
            task_type=task_type,
            foil_rule=foil_rule,
            cluster_variant=cluster_variant,
            trials_per_participant=trials_per_participant,
            ratings_per_list=ratings_per_list,
            catch_trials=catch_trials,
            practice_trials=practice_trials,
            rng_seed=rng_seed,
            size_policy=size_policy,
            iri_max_percentile=iri_max_percentile,
            iri_require_label_match=iri_require_label_match,
            **settings,
        )
        survey.iri_jobs.set(iri_jobs)
        pool = PhotoPool(targets=list({i.target_id: i.target for i in iris}.values()), rng=random.Random(f"{rng_seed}:pool"))
        if task_type == Survey.TaskType.CLUSTER:
            units = _cluster_screens(survey=survey, iris=iris, rng=rng)
        else:
            units = [[t] for t in _afc_trials(survey=survey, iris=iris, rng=rng, pool=pool, report=report)]
        main = [t for unit in units for t in unit]
        shown_together = _shown_together(main)
        lists = _lists_build(survey=survey, units=units)
        for trial_list, list_units in lists:
            rows = [t for unit in list_units for t in unit]
            for t in rows:
                t.trial_list = trial_list
            rows += _obvious_trials(survey=survey, kind=Trial.Kind.CATCH, count=catch_trials, trial_list=trial_list,
                                    main=rows, pool=pool, shown_together=shown_together)
            Trial.objects.bulk_create(rows)
        Trial.objects.bulk_create(_obvious_trials(survey=survey, kind=Trial.Kind.PRACTICE, count=practice_trials,
                                                  trial_list=None, main=main, pool=pool, shown_together=shown_together))
        _slots_create(survey=survey, lists=[tl for tl, _ in lists])
        Survey.objects.filter(pk=survey.pk).update(build_report=report)
        survey.build_report = report
    return survey


def survey_check(
    *,
    slug: str,
    iri_jobs: list[IriJob],
    foil_rule: str,
    task_type: str = Survey.TaskType.TWO_AFC,
    size_policy: str = Survey.SizePolicy.RESIZE,
    iri_max_percentile: float | None = None,
    iri_require_label_match: bool = False,
    one_side_max_fraction: float | None = None,
) -> tuple[list[IriImage], dict]:
    """Everything that must hold before a survey is created. Returns the IRIs its trials will use (those that
    pass the validity filter) and the start of its build report."""
    survey_slug_check(slug=slug)
    if not iri_jobs:
        raise ApplicationError(NO_FINISHED_SET)
    if len({j.team_id for j in iri_jobs}) > 1:
        raise ApplicationError(SETS_OF_TEAMS)
    unfinished = [str(j) for j in iri_jobs if j.status != IriJob.Status.DONE]
    if unfinished:
        raise ApplicationError(UNFINISHED_SETS.format(names=", ".join(unfinished)))
    if size_policy not in Survey.SizePolicy.values:
        raise ApplicationError(BAD_SIZE_POLICY.format(value=size_policy), extra={"field": "size_policy"})
    _numbers_check(iri_max_percentile=iri_max_percentile)
    positions = 3 if task_type == Survey.TaskType.CLUSTER else 2
    if one_side_max_fraction is not None and not 1 / positions < one_side_max_fraction <= 1:
        rule = f"empty, or above 1/{positions} (an even spread over the {positions} screen positions) and at most 1"
        raise ApplicationError(BAD_NUMBER.format(field="one_side_max_fraction", rule=rule), extra={"field": "one_side_max_fraction"})
    iris = list(
        IriImage.objects.filter(job__in=iri_jobs)
        .select_related("job", "target__image", "target_image", "image", "seed").order_by("job_id", "id")
    )
    if not iris:
        raise ApplicationError(NO_FINISHED_SET)
    iris, left_out = _validity_filter(iris=iris, max_percentile=iri_max_percentile, require_label_match=iri_require_label_match)
    report = {
        "size_policy": size_policy,
        "resized": [],
        "validity_filter": {"max_percentile": iri_max_percentile, "require_label_match": iri_require_label_match},
        "left_out": left_out,
    }
    if not iris:
        raise ApplicationError(ALL_LEFT_OUT.format(reasons=_reasons_text(left_out)), extra={"left_out": left_out})
    _sizes_check(iris=iris, task_type=task_type, foil_rule=foil_rule, size_policy=size_policy)
    if task_type == Survey.TaskType.CLUSTER:
        per_target = {}
        for iri in iris:
            per_target.setdefault(iri.target_id, []).append(iri)
        if sum(len(v) >= CLUSTER_IRIS_PER_REFERENCE for v in per_target.values()) < CLUSTER_REFERENCES:
            raise ApplicationError(NEEDS_CLUSTER_TARGETS)
    elif foil_rule == Survey.FoilRule.OTHER_TARGET and len({i.target_id for i in iris}) < 2:
        raise ApplicationError(NEEDS_TWO_TARGETS.format(rule=foil_rule, where=""))
    elif foil_rule == Survey.FoilRule.SAME_SET:
        for job_id, group in itertools.groupby(iris, key=lambda i: i.job_id):
            if len({i.target_id for i in group}) < 2:
                raise ApplicationError(NEEDS_TWO_TARGETS.format(rule=foil_rule, where=f" in each set (set {job_id} has one)"))
    elif foil_rule == Survey.FoilRule.SAME_CLASS:
        unlabelled = sorted({i.target.name for i in iris if not (i.target.label or "").strip()})
        if unlabelled:
            raise ApplicationError(NEEDS_LABELS.format(names=", ".join(unlabelled)))
        per_class: dict[str, set[int]] = {}
        for iri in iris:
            per_class.setdefault(_class_of(iri), set()).add(iri.target_id)
        lonely = sorted(label for label, targets in per_class.items() if len(targets) < 2)
        if lonely:
            raise ApplicationError(NEEDS_TWO_PER_CLASS.format(labels=", ".join(f"'{label}'" for label in lonely)))
    return iris, report


def survey_slug_check(*, slug: str) -> None:
    """A new survey's slug: letters, digits, '-' and '_', short enough, and not taken."""
    if slugify(slug) != slug or not slug:
        raise ApplicationError(BAD_SLUG)
    limit = Survey._meta.get_field("slug").max_length
    if len(slug) > limit:
        raise ApplicationError(SLUG_TOO_LONG.format(n=limit))
    if Survey.objects.filter(slug=slug).exists():
        raise ApplicationError(SLUG_TAKEN.format(slug=slug))


def build_summary(report: dict) -> str:
    """The build report in one sentence, for the admin."""
    resized = report.get("resized") or []
    if resized:
        sizes = "; ".join(f"{r['images']} from set {r['set']} ({r['from'][0]}→{r['to'][0]} px)" for r in resized)
        parts = [f"resized options to their query's size: {sizes}"]
    else:
        parts = ["no image needed resizing (every screen shows one size)"]
    left_out = report.get("left_out") or {}
    parts.append(f"IRIs left out: {_reasons_text(left_out)}" if any(left_out.values()) else "no IRI left out")
    return "; ".join(parts) + "."


def _validity_filter(*, iris: list[IriImage], max_percentile: float | None, require_label_match: bool):
    """Leave out the IRIs whose validity record fails the survey's filter; count them by reason."""
    left_out = {reason: 0 for reason in VALIDITY_REASONS}
    if max_percentile is None and not require_label_match:
        return iris, left_out
    kept = []
    for iri in iris:
        reason = iri_validity_failure(iri=iri, max_percentile=max_percentile, require_label_match=require_label_match)
        if reason is None:
            kept.append(iri)
        else:
            left_out[reason] += 1
    return kept, left_out


def _reasons_text(left_out: dict) -> str:
    return ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in left_out.items() if n)


def _sizes_check(*, iris: list[IriImage], task_type: str, foil_rule: str, size_policy: str) -> None:
    """Every image on one screen must have one pixel size. A 2AFC trial shows its IRI, its target and the
    foil: with the seed as foil all three come from one set; a target of another set is resized to the
    query's size (policy 'resize') or the survey is refused ('refuse'). A clustering screen shows six IRIs at
    once, so its sets must share one size."""
    sizes: dict[tuple, list[str]] = {}
    for job in {i.job_id: i.job for i in iris}.values():
        iri = next(i for i in iris if i.job_id == job.pk)
        sizes.setdefault(image_size(iri.image), []).append(f"set {job.pk} '{job}'")
    if len(sizes) < 2 or (task_type == Survey.TaskType.TWO_AFC and foil_rule == Survey.FoilRule.SEED):
        return
    names = "; ".join(f"{', '.join(sets)}: {w}×{h} px" for (w, h), sets in sorted(sizes.items()))
    if task_type == Survey.TaskType.CLUSTER:
        raise ApplicationError(MIXED_SIZES_CLUSTER.format(sets=names), extra={"field": "iri_jobs"})
    if size_policy == Survey.SizePolicy.REFUSE:
        raise ApplicationError(MIXED_SIZES_REFUSED.format(sets=names), extra={"field": "iri_jobs"})


def _class_of(iri: IriImage) -> str:
    """The class of an IRI's target photo; labels compare trimmed and case-insensitively ('Cat' = 'cat ')."""
    return iri.target.label.strip().casefold()


def _numbers_check(**fields) -> None:
    rules = {
        "ratings_per_list": (lambda v: v >= 1, "at least 1"),
        "catch_trials": (lambda v: v >= 0, "0 or more"),
        "practice_trials": (lambda v: v >= 0, "0 or more"),
        "time_limit_minutes": (lambda v: v >= 1, "at least 1"),
        "practice_pass_fraction": (lambda v: 0 <= v <= 1, "between 0 and 1"),
        "catch_min_accuracy": (lambda v: 0 <= v <= 1, "between 0 and 1"),
        "rt_floor_max_fraction": (lambda v: 0 <= v <= 1, "between 0 and 1"),
        "max_participants": (lambda v: v is None or v >= 1, "empty or at least 1"),
        "iri_max_percentile": (lambda v: 0 <= v <= 100, "empty or between 0 and 100"),
        "one_side_min_trials": (lambda v: v >= 1, "at least 1"),
    }
    for field, value in fields.items():
        if field in rules and value is not None and not rules[field][0](value):
            raise ApplicationError(BAD_NUMBER.format(field=field, rule=rules[field][1]), extra={"field": field})


def _afc_trials(*, survey: Survey, iris: list[IriImage], rng: random.Random, pool: PhotoPool, report: dict) -> list[Trial]:
    """One 2AFC trial per IRI. Foil rules: the seed; a random other target (any set); another target of the
    same IRI set; another target of the same class (TargetPhoto.label, checked by survey_check). A target foil
    is shown as the engine saw it, at the query's size: another set's target image of that size, or the photo
    fitted to it (recorded in the report). `target_option` is 0; the screen side is chosen per participant."""
    trials = []
    resized: dict[tuple, int] = {}
    for iri in iris:
        size = image_size(iri.image)
        if survey.foil_rule == Survey.FoilRule.SEED:
            foil = iri.seed
        else:
            if survey.foil_rule == Survey.FoilRule.OTHER_TARGET:
                candidates = iris
            elif survey.foil_rule == Survey.FoilRule.SAME_CLASS:
                candidates = [i for i in iris if _class_of(i) == _class_of(iri)]
            else:
                candidates = [i for i in iris if i.job_id == iri.job_id]
            others: dict[int, list[IriImage]] = {}
            for other in candidates:
                if other.target_id != iri.target_id:
                    others.setdefault(other.target_id, []).append(other)
            chosen = others[rng.choice(sorted(others))]
            same_size = [o.target_image for o in chosen if image_size(o.target_image) == size]
            if same_size:
                foil = same_size[0]
            else:
                foil = pool.fitted(f"target {chosen[0].target_id}", chosen[0].target.image, size)
                key = (chosen[0].job_id, str(chosen[0].job), image_size(chosen[0].target_image), size)
                resized[key] = resized.get(key, 0) + 1
        trials.append(
            Trial(survey=survey, iri=iri, query=iri.image, option_0=iri.target_image, option_1=foil, target_option=0,
                  foil_kind=survey.foil_rule)
        )
    report["resized"] = [
        {"set": job_id, "name": name, "from": list(old), "to": list(new), "images": n}
        for (job_id, name, old, new), n in sorted(resized.items())
    ]
    return trials


def _shown_together(main: list[Trial]) -> set[tuple[int, int]]:
    """Every (image, image) pair that a main trial shows on one screen: its options with each other and the
    query with each option (both orders)."""
    pairs = set()
    for t in main:
        ids = [t.query_id, *t.option_ids]
        pairs.update((a, b) for a in ids for b in ids if a != b)
    return pairs


def colour_histogram(image: StoredImage, bins: int = 8) -> np.ndarray:
    """A normalised RGB histogram (bins³ cells) of a stored PNG: the cheap similarity for 'hard' clustering."""
    with image.file.open("rb") as f:
        pixels = np.asarray(Image.open(io.BytesIO(f.read())).convert("RGB").resize((64, 64)))
    q = (pixels // (256 // bins)).reshape(-1, 3).astype(np.int64)
    hist = np.bincount(q[:, 0] * bins * bins + q[:, 1] * bins + q[:, 2], minlength=bins**3).astype(float)
    return hist / hist.sum()


def cluster_triples(*, targets: list, variant: str, rng: random.Random, histogram=colour_histogram) -> list[tuple]:
    """Group target photos into triples of references. 'hard': greedily the triple with the smallest summed
    L1 distance between colour histograms (the most alike-looking references), then the next among the rest;
    'random': a shuffled split. Without class labels this is the stand-in for 'references from the same class'."""
    targets = list(targets)
    if variant == Survey.ClusterVariant.RANDOM:
        rng.shuffle(targets)
        return [tuple(targets[i : i + 3]) for i in range(0, len(targets) - len(targets) % 3, 3)]
    hists = {t.pk: histogram(t.image) for t in targets}
    dist = lambda a, b: float(np.abs(hists[a.pk] - hists[b.pk]).sum())  # noqa: E731
    triples = []
    while len(targets) >= 3:
        best = min(itertools.combinations(targets, 3), key=lambda c: dist(c[0], c[1]) + dist(c[0], c[2]) + dist(c[1], c[2]))
        triples.append(best)
        targets = [t for t in targets if t not in best]
    return triples


def _cluster_screens(*, survey: Survey, iris: list[IriImage], rng: random.Random) -> list[list[Trial]]:
    """Screens of three references (each target as the engine saw it, at the IRIs' size) and two IRIs of each."""
    per_target: dict[int, list[IriImage]] = {}
    for iri in iris:
        per_target.setdefault(iri.target_id, []).append(iri)
    usable = [iris_[0].target for iris_ in per_target.values() if len(iris_) >= CLUSTER_IRIS_PER_REFERENCE]
    screens = []
    for triple in cluster_triples(targets=usable, variant=survey.cluster_variant, rng=rng):
        refs = list(triple)
        rng.shuffle(refs)
        images = [per_target[ref.pk][0].target_image for ref in refs]
        rounds = min(len(per_target[t.pk]) for t in refs) // CLUSTER_IRIS_PER_REFERENCE
        for r in range(rounds):
            screen = secrets.token_urlsafe(12)
            rows = []
            for k, ref in enumerate(refs):
                for iri in per_target[ref.pk][r * 2 : r * 2 + 2]:
                    rows.append(
                        Trial(survey=survey, task_type=Survey.TaskType.CLUSTER, screen=screen, iri=iri, query=iri.image,
                              option_0=images[0], option_1=images[1], option_2=images[2], n_options=3, target_option=k)
                    )
            screens.append(rows)
    return screens


def _lists_build(*, survey: Survey, units: list[list[Trial]]) -> list[tuple[TrialList, list[list[Trial]]]]:
    """Split units (2AFC: a trial; clustering: a screen) into lists, round robin in condition order, so list
    sizes differ by at most one unit and every list mixes the IRI sets."""
    unit_size = len(units[0]) if units else 1
    per_list = math.ceil((survey.trials_per_participant or len(units) * unit_size) / unit_size)
    n_lists = max(1, math.ceil(len(units) / max(1, per_list)))
    lists = [TrialList.objects.create(survey=survey, index=i) for i in range(n_lists)]
    return [(tl, units[i::n_lists]) for i, tl in enumerate(lists)]


def _obvious_trials(*, survey: Survey, kind: str, count: int, trial_list: TrialList | None, main: list[Trial],
                    pool: PhotoPool, shown_together: set) -> list[Trial]:
    """Catch trials (per list: `main` = the list's main trials) and practice (`main` = all of them): a natural
    photo as the query and the same photo among the options, beside other photos, all at the size of `main`'s
    queries. The photos are outside `main` and no two of them are ever shown together in a main trial, so
    they give nothing of a main trial away. 2AFC: one screen each; clustering: one screen of three references
    with a row per trial."""
    if not count:
        return []
    avoid = {i for t in main for i in (t.query_id, *t.option_ids)}
    size = _common_size([t.query for t in main])
    photos = _photos_for(pool=pool, size=size, avoid=avoid, survey=survey, what=kind)
    apart = lambda a, b: a.pk != b.pk and (a.pk, b.pk) not in shown_together  # noqa: E731
    if survey.task_type == Survey.TaskType.CLUSTER:
        refs = next((c for c in itertools.combinations(photos, 3) if all(apart(a, b) for a, b in itertools.combinations(c, 2))), None)
        if refs is None:
            raise ApplicationError(POOL_TOO_SMALL.format(what=kind, n=3, found=0))
        screen = secrets.token_urlsafe(12)
        return [
            Trial(survey=survey, trial_list=trial_list, kind=kind, task_type=Survey.TaskType.CLUSTER, screen=screen,
                  query=refs[k % 3], option_0=refs[0], option_1=refs[1], option_2=refs[2], n_options=3,
                  target_option=k % 3)
            for k in range(count)
        ]
    n = len(photos)
    pairs = [(photos[i], photos[(i + j) % n]) for j in range(1, n) for i in range(n) if apart(photos[i], photos[(i + j) % n])]
    if not pairs:
        raise ApplicationError(POOL_TOO_SMALL.format(what=kind, n=2, found=0))
    return [
        Trial(survey=survey, trial_list=trial_list, kind=kind, query=query, option_0=query, option_1=other,
              target_option=0, foil_kind="photo")
        for query, other in (pairs[k % len(pairs)] for k in range(count))
    ]


def _common_size(images: list[StoredImage]) -> tuple[int, int]:
    sizes = [image_size(i) for i in images]
    return max(set(sizes), key=lambda s: (sizes.count(s), s))


def _photos_for(*, pool: PhotoPool, size, avoid: set[int], survey: Survey, what: str) -> list[StoredImage]:
    needed = survey.n_options
    photos = pool.pick(size=size, n=max(needed + 1, 6), avoid=avoid)
    if len(photos) < needed:
        raise ApplicationError(POOL_TOO_SMALL.format(what=what, n=needed, found=len(photos)))
    return photos


def _slots_create(*, survey: Survey, lists: list[TrialList]) -> None:
    n = len(lists)
    Slot.objects.bulk_create(
        Slot(survey=survey, trial_list=tl, is_pilot=pilot, ordinal=k, rank=k * n + tl.index)
        for pilot in (False, True)
        for tl in lists
        for k in range(survey.ratings_per_list)
    )


def survey_publish(*, survey: Survey) -> Survey:
    if not survey.trials.exists():
        raise ApplicationError("A survey without trials cannot be published.")
    Survey.objects.filter(pk=survey.pk).update(status=Survey.Status.LIVE)
    survey.refresh_from_db()
    return survey


def survey_pilot_reset(*, survey: Survey) -> int:
    """Delete every pilot (and bot-in-pilot) session of a survey and free the pilot slots. Returns how many."""
    with transaction.atomic():
        Slot.objects.filter(survey=survey, is_pilot=True).update(participant=None, reserved_until=None, filled_at=None)
        deleted, _ = Participant.objects.filter(survey=survey, is_pilot=True).delete()
    return deleted


# ---------------------------------------------------------------------------------------------------------
# Enrollment and reservations


def enroll_is_mturk_preview(*, assignment_id: str) -> bool:
    """MTurk shows the task before a worker accepts it: such a visit stores and reserves nothing."""
    return assignment_id == MTURK_PREVIEW


def participant_enroll(
    *,
    survey: Survey,
    prolific_pid: str = "",
    study_id: str = "",
    session_id: str = "",
    worker_id: str = "",
    assignment_id: str = "",
    hit_id: str = "",
    turk_submit_to: str = "",
    token: str = "",
    pilot: bool = False,
    is_bot: bool = False,
    client: dict | None = None,
) -> tuple[Participant, bool]:
    """Start a session in a reserved slot, or hand back an earlier one per the resume policy.

    Returns (participant, created). A returning PID / worker ID / token gets its own session back (resume),
    a fresh start of it (restart; `participant.restarted` is True) or 409 (block); a finished one gets its
    final state (so nobody takes a study twice). A new session claims a slot in the same transaction; when
    none is free the study is full (409) and nothing is stored.
    """
    if survey.status != Survey.Status.LIVE and not (pilot and survey.status == Survey.Status.DRAFT):
        raise ApplicationError(SURVEY_NOT_LIVE, status_code=status.HTTP_404_NOT_FOUND)
    if enroll_is_mturk_preview(assignment_id=assignment_id):
        raise ApplicationError("An MTurk preview cannot enroll.", extra={"reason": "preview"})
    if turk_submit_to and turk_submit_to.rstrip("/") not in MTURK_HOSTS:
        raise ApplicationError(BAD_SUBMIT_TO)
    existing = _participant_find(survey=survey, prolific_pid=prolific_pid, worker_id=worker_id, token=token)
    if existing is not None:
        return _participant_return(participant=_holder_check(participant=existing, token=token, client=client)), False
    try:
        with transaction.atomic():
            participant = Participant.objects.create(
                survey=survey,
                prolific_pid=prolific_pid,
                study_id=study_id,
                session_id=session_id,
                worker_id=worker_id,
                assignment_id=assignment_id,
                hit_id=hit_id,
                turk_submit_to=turk_submit_to.rstrip("/"),
                is_pilot=pilot,
                is_bot=is_bot,
                client_info=client or {},
                last_seen_at=timezone.now(),
            )
            slot = slot_claim(participant=participant)
            if slot is None:
                raise ApplicationError(SURVEY_FULL, extra={"reason": "full"}, status_code=status.HTTP_409_CONFLICT)
            _assignments_create(participant=participant)
    except IntegrityError:  # the same PID / worker enrolled twice at once: hand back the one that won
        existing = _participant_find(survey=survey, prolific_pid=prolific_pid, worker_id=worker_id, token="")
        if existing is None:
            raise
        return _participant_return(participant=_holder_check(participant=existing, token=token, client=client)), False
    participant.restarted = False
    return participant, True


def _participant_find(*, survey: Survey, prolific_pid: str, worker_id: str, token: str) -> Participant | None:
    if prolific_pid:
        return Participant.objects.filter(survey=survey, prolific_pid=prolific_pid).first()
    if worker_id:
        return Participant.objects.filter(survey=survey, worker_id=worker_id).first()
    if token:
        return Participant.objects.filter(survey=survey, token=token).first()
    return None


def _holder_check(*, participant: Participant, token: str, client: dict | None) -> Participant:
    """A platform ID (Prolific PID, MTurk worker ID) is typed into a URL, so anyone can present someone else's.
    Only the browser that holds the session's token gets the session back; any other attempt is refused and
    recorded on the session it tried to reach."""
    if token == participant.token:
        return participant
    ParticipantEvent.objects.create(
        participant=participant, client_id=uuid.uuid4(), type=ParticipantEvent.Type.DUPLICATE_ENROLL,
        data={"client": client or {}, "presented_token": bool(token)},
    )
    raise ApplicationError(DUPLICATE_ENROLL, extra={"reason": "duplicate"}, status_code=status.HTTP_409_CONFLICT)


def _participant_return(*, participant: Participant) -> Participant:
    participant.restarted = False
    if participant.status != Participant.Status.ACTIVE:
        return participant
    policy = participant.survey.resume_policy
    if policy == Survey.ResumePolicy.BLOCK:
        raise ApplicationError(RETURNING_BLOCKED, extra={"reason": "blocked"}, status_code=status.HTTP_409_CONFLICT)
    if policy == Survey.ResumePolicy.RESTART:
        with transaction.atomic():
            participant.responses.all().delete()
            participant.assignments.all().delete()
            participant.events.all().delete()
            Participant.objects.filter(pk=participant.pk).update(
                consented_at=None, stage=Participant.Stage.ARRIVED, restarts=participant.restarts + 1, last_seen_at=timezone.now()
            )
            _assignments_create(participant=participant)
        participant.refresh_from_db()
        participant.restarted = True
    return participant


def slot_claim(*, participant: Participant) -> Slot | None:
    """Reserve the lowest-ranked claimable slot of the participant's mode: free, or reserved but expired (its
    holder is then timed out). `FOR UPDATE SKIP LOCKED`, so concurrent enrollments never wait for or take
    the same slot. Live slots beyond the survey's quota are not claimable. Call inside a transaction."""
    survey = participant.survey
    now = timezone.now()
    candidates = Slot.objects.filter(survey=survey, is_pilot=participant.is_pilot, filled_at__isnull=True).filter(
        models_q_free(now)
    )
    if not participant.is_pilot and survey.max_participants:
        candidates = candidates.filter(rank__lt=survey.max_participants)
    slot = candidates.order_by("rank").select_for_update(skip_locked=True, of=("self",)).first()
    if slot is None:
        return None
    if slot.participant_id is not None:
        Participant.objects.filter(pk=slot.participant_id, status=Participant.Status.ACTIVE).update(
            status=Participant.Status.TIMED_OUT, ended_at=now
        )
    slot.participant = participant
    slot.reserved_until = now + timedelta(minutes=survey.time_limit_minutes)
    slot.save(update_fields=["participant", "reserved_until"])
    Participant.objects.filter(pk=participant.pk).update(trial_list=slot.trial_list_id)
    participant.trial_list_id = slot.trial_list_id
    return slot


def models_q_free(now):
    from django.db.models import Q

    return Q(participant__isnull=True) | Q(reserved_until__lt=now)


def reservations_release_expired(*, now=None) -> int:
    """The periodic cleanup: time out the holders of expired reservations and free their slots. Returns how many."""
    now = now or timezone.now()
    with transaction.atomic():
        slots = list(
            Slot.objects.select_for_update(skip_locked=True)
            .filter(filled_at__isnull=True, participant__isnull=False, reserved_until__lt=now)
            .values_list("pk", "participant_id")
        )
        if not slots:
            return 0
        Participant.objects.filter(pk__in=[p for _, p in slots], status=Participant.Status.ACTIVE).update(
            status=Participant.Status.TIMED_OUT, ended_at=now
        )
        Slot.objects.filter(pk__in=[s for s, _ in slots]).update(participant=None, reserved_until=None)
    return len(slots)


def _assignments_create(*, participant: Participant) -> None:
    """Practice first, then the list's main and catch trials in a fresh random order (clustering: screens in
    random order, rows within a screen shuffled), each with this participant's option layout: the target's
    side is counterbalanced by the participant's slot in the list (surveys.layouts)."""
    rng = random.Random()
    survey = participant.survey
    fields = ("id", "kind", "n_options", "target_option", "screen")
    practice = [TrialShape(*row) for row in Trial.objects.filter(survey_id=survey.pk, kind=Trial.Kind.PRACTICE).values_list(*fields)]
    rows = [TrialShape(*row) for row in Trial.objects.filter(trial_list_id=participant.trial_list_id).values_list(*fields)]
    rater = Slot.objects.filter(participant=participant).values_list("ordinal", flat=True).first() or 0
    orders = option_orders(trials=rows, rater=rater, seed=f"{survey.rng_seed}:{participant.trial_list_id}")
    orders.update(option_orders(trials=practice, rater=rater, seed=f"{survey.rng_seed}:practice"))
    order = [t.id for t in practice]
    if survey.task_type == Survey.TaskType.CLUSTER:
        screens: dict[str, list[int]] = {}
        for t in rows:
            screens.setdefault(t.screen, []).append(t.id)
        keys = list(screens)
        rng.shuffle(keys)
        for key in keys:
            rng.shuffle(screens[key])
            order += screens[key]
    else:
        ids = [t.id for t in rows]
        rng.shuffle(ids)
        order += ids
    Assignment.objects.bulk_create(
        Assignment(participant=participant, trial_id=t, position=i, option_order=orders[t]) for i, t in enumerate(order)
    )


# ---------------------------------------------------------------------------------------------------------
# During the session


def participant_consent(*, participant: Participant) -> Participant:
    Participant.objects.filter(pk=participant.pk, consented_at__isnull=True).update(
        consented_at=timezone.now(), stage=Participant.Stage.CONSENTED
    )
    participant.refresh_from_db()
    return participant


def participant_heartbeat(*, participant: Participant, stage: str = "") -> Participant:
    """The browser is alive: record when and (optionally) where, and keep the reservation at least
    HEARTBEAT_HOLD_S ahead, so a slow but present participant keeps the list while one who left loses it a few
    minutes after the time limit. The hold never goes beyond HOLD_MAX_FACTOR × the time limit after enrollment
    (a tab left open forever does not block a list) and never revives an expired reservation."""
    now = timezone.now()
    fields = {"last_seen_at": now}
    stage_map = {"practice": Participant.Stage.PRACTICE, "trials": Participant.Stage.TRIALS}
    if stage in stage_map and participant.status == Participant.Status.ACTIVE:
        fields["stage"] = stage_map[stage]
    Participant.objects.filter(pk=participant.pk).update(**fields)
    if participant.status == Participant.Status.ACTIVE:
        limit = timedelta(minutes=participant.survey.time_limit_minutes)
        hold = min(now + timedelta(seconds=HEARTBEAT_HOLD_S), participant.created_at + HOLD_MAX_FACTOR * limit)
        # Row-locked and rechecked by PostgreSQL: a slot claimed by someone else meanwhile no longer matches.
        Slot.objects.filter(
            participant=participant, filled_at__isnull=True, reserved_until__gt=now, reserved_until__lt=hold
        ).update(reserved_until=hold)
    participant.refresh_from_db()
    return participant


def participant_events_record(*, participant: Participant, events: list[dict], client: dict | None = None) -> int:
    """Store browser events once each (a retried batch repeats `id`s, which are ignored). Returns how many are new."""
    before = ParticipantEvent.objects.filter(participant=participant).count()
    ParticipantEvent.objects.bulk_create(
        [
            ParticipantEvent(
                participant=participant,
                client_id=e["id"],
                type=e["type"],
                t_ms=e.get("t_ms"),
                trial_public_id=e.get("trial", "") or "",
                data=e.get("data") or {},
            )
            for e in events
        ],
        ignore_conflicts=True,
    )
    fields = {"last_seen_at": timezone.now()}
    if client:
        fields["client_info"] = {**participant.client_info, **client}
    Participant.objects.filter(pk=participant.pk).update(**fields)
    return ParticipantEvent.objects.filter(participant=participant).count() - before


# The answer hot path: one statement checks the session (token, active, consented), that it still holds its
# reservation (an unfilled slot), that the trial is assigned to it and that the choice is in range, and inserts;
# a replay or a second answer inserts nothing (unique idempotency key, unique (participant, trial)).
# The browser sends the screen position it chose; the stored choice is the option shown there.
_ANSWER_SQL = """
INSERT INTO surveys_response (participant_id, trial_id, choice, shown_position, rt_ms, idempotency_key, created_at)
SELECT p.id, t.id, CAST(substr(a.option_order, %s + 1, 1) AS INTEGER), %s, %s, %s, %s
FROM surveys_participant p
JOIN surveys_slot s ON s.participant_id = p.id AND s.filled_at IS NULL
JOIN surveys_trial t ON t.public_id = %s
JOIN surveys_assignment a ON a.participant_id = p.id AND a.trial_id = t.id
WHERE p.token = %s AND p.status = 'active' AND p.consented_at IS NOT NULL AND t.n_options > %s
ON CONFLICT DO NOTHING
RETURNING id, (SELECT kind FROM surveys_trial WHERE surveys_trial.id = surveys_response.trial_id), choice
"""


def response_record(
    *, token: str, trial_public_id: str, choice: int, rt_ms: float, idempotency_key: uuid.UUID
) -> tuple[bool, dict]:
    """Store one answer exactly once. `choice` is the screen position (0 = left). Returns (created, extra)
    where extra holds practice feedback.

    The common case is one SQL statement (prepared on PostgreSQL). When it inserts nothing, the slow path
    says why: a replayed key (not created, no error), or 404 / 409 with a reason.
    """
    now = timezone.now()
    params = [choice, choice, rt_ms, idempotency_key, now, trial_public_id, token, choice]
    if connection.vendor == "postgresql":
        row = _answer_insert_postgres(params)
    else:
        params[3] = idempotency_key.hex
        params[4] = connection.ops.adapt_datetimefield_value(now)
        with connection.cursor() as cur:
            cur.execute(_ANSWER_SQL.replace("ON CONFLICT", "AND 1 ON CONFLICT"), params)
            row = cur.fetchone()
    if row is not None:
        if row[1] == Trial.Kind.PRACTICE:
            return True, _practice_feedback(token=token, trial_public_id=trial_public_id, choice=row[2])
        return True, {}
    return False, _response_refused(
        token=token, trial_public_id=trial_public_id, choice=choice, idempotency_key=idempotency_key
    )


def _answer_insert_postgres(params: list):
    """Run the answer statement on a plain psycopg cursor: server-side binding, prepared once per connection,
    none of Django's per-query wrapping and no per-request health check (`SELECT 1`). Instead, a kept
    connection that turns out dead (PostgreSQL restarted) is replaced and the statement sent once more, which
    is safe because it is idempotent. Errors still go through Django's wrapper, as Django's own exceptions."""
    for attempt in (1, 2):
        reused = connection.connection is not None
        try:
            with connection.wrap_database_errors:
                connection.ensure_connection()
                with psycopg.Cursor(connection.connection) as cur:
                    cur.execute(_ANSWER_SQL, params, prepare=True)
                    return cur.fetchone()
        except (OperationalError, InterfaceError):
            if not reused or attempt == 2 or connection.in_atomic_block:
                raise
            connection.close()


def _response_refused(*, token: str, trial_public_id: str, choice: int, idempotency_key: uuid.UUID) -> dict:
    participant = Participant.objects.filter(token=token).first()
    if participant is None:
        raise ApplicationError(UNKNOWN_SESSION, status_code=status.HTTP_404_NOT_FOUND)
    same_key = Response.objects.filter(idempotency_key=idempotency_key).select_related("trial").first()
    if same_key is not None:
        if same_key.participant_id != participant.pk or same_key.trial.public_id != trial_public_id:
            raise ApplicationError(KEY_REUSED, status_code=status.HTTP_409_CONFLICT)
        if same_key.trial.kind == Trial.Kind.PRACTICE:
            return _practice_feedback(token=token, trial_public_id=trial_public_id, choice=same_key.choice)
        return {}
    assignment = (
        Assignment.objects.filter(participant=participant, trial__public_id=trial_public_id).select_related("trial").first()
    )
    if assignment is None:
        raise ApplicationError(TRIAL_NOT_ASSIGNED, status_code=status.HTTP_404_NOT_FOUND)
    if choice >= assignment.trial.n_options:
        raise ApplicationError(BAD_CHOICE.format(n=assignment.trial.n_options))
    if participant.status != Participant.Status.ACTIVE:
        raise ApplicationError(
            SESSION_ENDED.format(status=participant.get_status_display().lower()),
            extra={"reason": "ended", "outcome": participant.status},
            status_code=status.HTTP_409_CONFLICT,
        )
    if participant.consented_at is None:
        raise ApplicationError(NOT_CONSENTED, status_code=status.HTTP_409_CONFLICT)
    if not Slot.objects.filter(participant=participant, filled_at__isnull=True).exists():
        raise ApplicationError(
            SESSION_ENDED.format(status="no reservation"), extra={"reason": "ended", "outcome": participant.status},
            status_code=status.HTTP_409_CONFLICT,
        )
    raise ApplicationError(ALREADY_ANSWERED, status_code=status.HTTP_409_CONFLICT)


def _practice_feedback(*, token: str, trial_public_id: str, choice: int) -> dict:
    """Feedback for a practice answer, and the pass decision once every practice trial is answered. A failed
    practice ends the session (failed attention) and frees its slot."""
    participant = Participant.objects.select_related("survey").get(token=token)
    trial = Trial.objects.get(public_id=trial_public_id)
    answers = list(
        Response.objects.filter(participant=participant, trial__kind=Trial.Kind.PRACTICE).values_list("choice", "trial__target_option")
    )
    total = participant.assignments.filter(trial__kind=Trial.Kind.PRACTICE).count()
    passed = None
    if len(answers) >= total:
        accuracy = sum(c == t for c, t in answers) / max(1, total)
        passed = accuracy >= participant.survey.practice_pass_fraction
        Participant.objects.filter(pk=participant.pk).update(practice_accuracy=accuracy)
        if not passed:
            _session_end(participant=participant, status_to=Participant.Status.FAILED_ATTENTION, reasons=["practice_failed"], fill=False)
    return {"feedback": {"correct": choice == trial.target_option}, "practice": {"done": len(answers), "total": total, "passed": passed}}


# ---------------------------------------------------------------------------------------------------------
# Ending a session


def participant_complete(*, participant: Participant) -> Participant:
    """Finish a session whose every trial is answered: compute exclusion flags (catch accuracy, RT floor),
    set the outcome and fill the slot, or free it for someone else when the person is excluded."""
    if participant.status != Participant.Status.ACTIVE:
        return participant
    missing = participant.assignments.exclude(trial__responses__participant=participant).count()
    if missing:
        raise ApplicationError(NOT_FINISHED, extra={"missing": missing}, status_code=status.HTTP_409_CONFLICT)
    survey = participant.survey
    rows = list(
        Response.objects.filter(participant=participant)
        .exclude(trial__kind=Trial.Kind.PRACTICE)
        .values_list("trial__kind", "choice", "trial__target_option", "rt_ms", "shown_position")
    )
    catch = [c == t for kind, c, t, *_ in rows if kind == Trial.Kind.CATCH]
    catch_accuracy = sum(catch) / len(catch) if catch else None
    fast = sum(rt < survey.rt_floor_ms for *_, rt, _ in rows) / len(rows) if rows else 0.0
    reasons = []
    if catch_accuracy is not None and catch_accuracy < survey.catch_min_accuracy:
        reasons.append("catch_accuracy")
    if fast > survey.rt_floor_max_fraction:
        reasons.append("rt_floor")
    if _one_sided(positions=[row[-1] for row in rows if row[-1] is not None], survey=survey):
        reasons.append("one_sided")
    Participant.objects.filter(pk=participant.pk).update(catch_accuracy=catch_accuracy, fast_rt_fraction=fast)
    status_to = Participant.Status.FAILED_ATTENTION if "catch_accuracy" in reasons else Participant.Status.COMPLETED
    fill = not (reasons and survey.refill_excluded)
    return _session_end(participant=participant, status_to=status_to, reasons=reasons, fill=fill)


def _one_sided(*, positions: list[int], survey: Survey) -> bool:
    """The survey's one-sided rule (results.alignment.one_sided, as the report applies it) for one session."""
    counts = np.bincount(np.asarray(positions, dtype=np.int64), minlength=survey.n_options)[None]
    return bool(one_sided(counts, max_fraction=survey.one_side_max_fraction, min_trials=survey.one_side_min_trials)[0])


def participant_leave(*, participant: Participant, status_to: str, detail: str = "") -> Participant:
    """The participant withdraws (returned) or the browser gives up (technical): end and free the slot."""
    if detail:
        Participant.objects.filter(pk=participant.pk).update(client_info={**participant.client_info, "abort_detail": detail[:500]})
    return _session_end(participant=participant, status_to=status_to, reasons=[], fill=False)


def _session_end(*, participant: Participant, status_to: str, reasons: list[str], fill: bool) -> Participant:
    """Lock the slot first (same order as slot_claim, so no deadlock), then move ACTIVE → final. A slot that
    went to someone else meanwhile means this session timed out; the list never gets an N + 1st rating."""
    now = timezone.now()
    with transaction.atomic():
        slot = Slot.objects.select_for_update().filter(participant=participant).first()
        if slot is None:
            status_to, fill = Participant.Status.TIMED_OUT, False
        updates = {"status": status_to, "ended_at": now, "stage": Participant.Stage.DONE}
        if status_to in (Participant.Status.COMPLETED, Participant.Status.FAILED_ATTENTION) and slot is not None:
            updates["completed_at"] = now
        if reasons:
            updates.update(excluded=True, exclusion_reasons=reasons)
        moved = Participant.objects.filter(pk=participant.pk, status=Participant.Status.ACTIVE).update(**updates)
        if moved and slot is not None:
            if fill:
                Slot.objects.filter(pk=slot.pk).update(filled_at=now)
            else:
                Slot.objects.filter(pk=slot.pk).update(participant=None, reserved_until=None)
    participant.refresh_from_db()
    return participant


# ---------------------------------------------------------------------------------------------------------
# Participants' data rights


def external_id_hash(*, value: str) -> str:
    """What the audit log keeps instead of a Prolific PID or worker ID: a hash keyed with the site's secret, so
    the log alone cannot be matched against a list of IDs, while one ID that someone asks about can be checked."""
    return salted_hmac("participant.erase", value, algorithm="sha256").hexdigest()[:16]


def participant_erase(
    *, surveys: QuerySet[Survey], prolific_pid: str = "", worker_id: str = "", dry_run: bool = False, user=None, request=None
) -> dict:
    """Delete every session of one person (by Prolific PID or MTurk worker ID) in these surveys, with their
    answers, events and assignments. A slot the person held or filled is free again, so its list can be refilled
    to exactly N. One transaction; one audit entry per team, naming a hash of the ID, never the ID.
    Returns what was (dry run: would be) erased, per team."""
    if bool(prolific_pid) == bool(worker_id):
        raise ApplicationError(ERASE_NEEDS_ONE_ID)
    kind, value = ("prolific_pid", prolific_pid) if prolific_pid else ("worker_id", worker_id)
    id_hash = external_id_hash(value=value)
    with transaction.atomic():
        ids = list(Participant.objects.filter(survey__in=surveys, **{kind: value}).values_list("pk", flat=True))
        # Slots first, in the order _session_end and slot_claim lock them: no deadlock with a session ending now.
        holders = set(
            Slot.objects.select_for_update().filter(participant__in=ids).order_by("pk").values_list("participant_id", flat=True)
        )
        sessions = list(Participant.objects.filter(pk__in=ids).select_related("survey__team").order_by("pk"))
        erased: dict[str, dict] = {}  # team name -> what was erased there
        for session in sessions:
            counts = erased.setdefault(
                session.survey.team.name,
                {"surveys": [], "sessions": 0, "responses": 0, "events": 0, "assignments": 0, "slots_freed": 0},
            )
            counts["surveys"].append(session.survey.slug)
            counts["sessions"] += 1
            counts["responses"] += session.responses.count()
            counts["events"] += session.events.count()
            counts["assignments"] += session.assignments.count()
            counts["slots_freed"] += session.pk in holders
        if not dry_run and sessions:
            Slot.objects.filter(participant__in=ids).update(participant=None, reserved_until=None, filled_at=None)
            Participant.objects.filter(pk__in=ids).delete()  # answers, events and assignments go with it
            Survey.objects.filter(pk__in={s.survey_id for s in sessions}).update(data_version=F("data_version") + 1)
            for team in {s.survey.team for s in sessions}:
                details = {"id_hash": id_hash, "id_kind": kind, **erased[team.name]}
                audit_record(action="participant.erase", team=team, user=user, request=request, details=details)
    return {"id_hash": id_hash, "id_kind": kind, "dry_run": dry_run, "teams": erased}


def participant_ids_expire(*, now=None) -> dict[str, int]:
    """Blank the personal IDs (Participant.PERSONAL_ID_FIELDS) of sessions that ended more than their survey's
    retention_days ago; answers stay, under the session's row id. One audit entry per survey that had any.
    Returns how many sessions lost their IDs, per survey slug."""
    now = now or timezone.now()
    blank = {field: "" for field in Participant.PERSONAL_ID_FIELDS}
    expired = {}
    for survey in Survey.objects.filter(retention_days__isnull=False).select_related("team"):
        cutoff = now - timedelta(days=survey.retention_days)
        with transaction.atomic():
            n = Participant.objects.filter(survey=survey, ended_at__lt=cutoff).exclude(**blank).update(**blank)
            if n:
                audit_record(action="survey.retention", obj=survey, details={"sessions": n, "retention_days": survey.retention_days})
                expired[survey.slug] = n
    return expired

"""The machinery every task type's build shares: trial lists (round robin, or an adaptive survey's blocks), their
catch trials, N slots per list and mode, the obvious catch and practice screens made of natural photos, and the
end of a build (adaptive collection's first state, the build report)."""
import itertools
import math
from collections.abc import Callable

from backend.exceptions import ApplicationError
from iri_worker.models import IriImage, StoredImage
from stats.adaptive.blocks import blocks_layout, blocks_split

from ..models import Slot, Survey, Trial, TrialList
from ..stimuli import PhotoPool, image_size
from .adaptive import adaptive_state_initial

NEEDS_LABELS = (
    "The foil rule 'same_class' needs a class label on every target photo; these have none: {names}. "
    "Set it in the admin (Target photos) or with the `label` field of POST /api/iri/photos."
)
POOL_TOO_SMALL = (
    "The {what} trials need {n} natural photos outside the participants' main trials that are never shown together "
    "in a main trial; {found} are available. Add target photos, or ask for fewer {what} trials."
)

# A type's obvious screens: (survey, photos to use, whether two photos may share a screen, kind, count, list) -> trials.
ScreenMaker = Callable[[Survey, list[StoredImage], Callable, str, int, TrialList | None], list[Trial]]


def class_of(iri: IriImage) -> str:
    """The class of an IRI's target photo; labels compare trimmed and case-insensitively ('Cat' = 'cat ')."""
    return iri.target.label.strip().casefold()


def labels_check(*, iris: list[IriImage], message: str = NEEDS_LABELS) -> None:
    unlabelled = sorted({i.target.name for i in iris if not (i.target.label or "").strip()})
    if unlabelled:
        raise ApplicationError(message.format(names=", ".join(unlabelled)))


def common_size(images: list[StoredImage]) -> tuple[int, int]:
    sizes = [image_size(i) for i in images]
    return max(set(sizes), key=lambda s: (sizes.count(s), s))


def lists_build(*, survey: Survey, units: list[list[Trial]]) -> list[tuple[TrialList, list[list[Trial]]]]:
    """Split units (2AFC: a trial; clustering: a screen) into lists whose sizes differ by at most one unit: round
    robin in condition order, so every list mixes the IRI sets. With a precision goal, blocks of a few units of one
    set instead (stats.adaptive.blocks_split), of which each participant gets several, chosen at enrollment."""
    unit_size = len(units[0]) if units else 1
    per_list = math.ceil((survey.trials_per_participant or len(units) * unit_size) / unit_size)
    n_lists = max(1, math.ceil(len(units) / max(1, per_list)))
    if survey.precision_goal is not None:
        units_per_block, _ = _blocks_layout(survey=survey, units=units)
        split = blocks_split(units=units, condition_of=lambda u: u[0].iri.job_id, units_per_block=units_per_block)
    else:
        split = [units[i::n_lists] for i in range(n_lists)]
    lists = [TrialList.objects.create(survey=survey, index=i) for i in range(len(split))]
    return list(zip(lists, split))


def lists_store(*, survey: Survey, lists: list[tuple[TrialList, list[list[Trial]]]], catch_for) -> None:
    """Store every list's main trials, each given its list, with the list's catch trials (catch_for(list, rows)).
    An adaptive survey's lists are blocks, several per participant: its catch trials are survey-wide (no list),
    made once from all its main trials, and every participant gets them."""
    adaptive = survey.precision_goal is not None
    for trial_list, units in lists:
        rows = [t for unit in units for t in unit]
        for t in rows:
            t.trial_list = trial_list
        Trial.objects.bulk_create(rows + ([] if adaptive else catch_for(trial_list, rows)))
    if adaptive:
        Trial.objects.bulk_create(catch_for(None, [t for _, units in lists for unit in units for t in unit]))


def survey_built(*, survey: Survey, lists: list[tuple[TrialList, list]], **fields) -> Survey:
    """The end of every build: N slots per list and mode, adaptive collection's first state when the survey has a
    precision goal, and what the builder recorded (``fields``: build_report, and categories for a classification)."""
    _slots_create(survey=survey, lists=[tl for tl, _ in lists])
    if survey.precision_goal is not None:
        _, blocks = _blocks_layout(survey=survey, units=[unit for _, units in lists for unit in units])
        fields["adaptive_state"] = adaptive_state_initial(survey=survey, blocks_per_participant=blocks).to_dict()
    Survey.objects.filter(pk=survey.pk).update(**fields)
    for name, value in fields.items():
        setattr(survey, name, value)
    return survey


def obvious_build(*, survey: Survey, units: list[list[Trial]], pool: PhotoPool, report: dict,
                  screens: ScreenMaker) -> Survey:
    """The build of a survey whose options are images (2AFC, clustering): its units in lists, each list's catch
    trials, the practice trials (``screens`` makes a type's obvious screens, see obvious_trials), and slots."""
    main = [t for unit in units for t in unit]
    shown_together = _shown_together(main)

    def obvious(kind: str, count: int, trial_list: TrialList | None, rows: list[Trial]) -> list[Trial]:
        return obvious_trials(survey=survey, kind=kind, count=count, trial_list=trial_list, main=rows, pool=pool,
                              shown_together=shown_together, screens=screens)

    lists = lists_build(survey=survey, units=units)
    lists_store(survey=survey, lists=lists,
                catch_for=lambda trial_list, rows: obvious(Trial.Kind.CATCH, survey.catch_trials, trial_list, rows))
    Trial.objects.bulk_create(obvious(Trial.Kind.PRACTICE, survey.practice_trials, None, main))
    return survey_built(survey=survey, lists=lists, build_report=report)


def obvious_trials(*, survey: Survey, kind: str, count: int, trial_list: TrialList | None, main: list[Trial],
                   pool: PhotoPool, shown_together: set, screens: ScreenMaker) -> list[Trial]:
    """Catch trials (per list: `main` = the list's main trials) and practice (`main` = all of them): a natural
    photo as the query and the same photo among the options, beside other photos, all at the size of `main`'s
    queries. The photos are outside `main` and no two of them are ever shown together in a main trial, so
    they give nothing of a main trial away."""
    if not count:
        return []
    avoid = {i for t in main for i in (t.query_id, *t.option_ids)}
    size = common_size([t.query for t in main])
    needed = survey.n_options
    photos = pool.pick(size=size, n=max(needed + 1, 6), avoid=avoid)
    if len(photos) < needed:
        raise ApplicationError(POOL_TOO_SMALL.format(what=kind, n=needed, found=len(photos)))
    apart = lambda a, b: a.pk != b.pk and (a.pk, b.pk) not in shown_together  # noqa: E731
    return screens(survey, photos, apart, kind, count, trial_list)


def apart_group(photos: list[StoredImage], apart, size: int, *, kind: str) -> tuple[StoredImage, ...]:
    """The first ``size`` photos of which no two were shown together; POOL_TOO_SMALL if there are none."""
    group = next((c for c in itertools.combinations(photos, size)
                  if all(apart(a, b) for a, b in itertools.combinations(c, 2))), None)
    if group is None:
        raise ApplicationError(POOL_TOO_SMALL.format(what=kind, n=size, found=0))
    return group


def _shown_together(main: list[Trial]) -> set[tuple[int, int]]:
    """Every (image, image) pair that a main trial shows on one screen: its options with each other and the
    query with each option (both orders)."""
    pairs = set()
    for t in main:
        ids = [t.query_id, *t.option_ids]
        pairs.update((a, b) for a in ids for b in ids if a != b)
    return pairs


def _blocks_layout(*, survey: Survey, units: list[list[Trial]]) -> tuple[int, int]:
    """An adaptive survey's (units per block, blocks per participant)."""
    unit_size = len(units[0]) if units else 1
    return blocks_layout(trials_per_participant=survey.trials_per_participant or len(units) * unit_size,
                         unit_size=unit_size)


def _slots_create(*, survey: Survey, lists: list[TrialList]) -> None:
    n = len(lists)
    Slot.objects.bulk_create(
        Slot(survey=survey, trial_list=tl, is_pilot=pilot, ordinal=k, rank=k * n + tl.index)
        for pilot in (False, True)
        for tl in lists
        for k in range(survey.ratings_per_list)
    )

"""A survey's analysis plan, frozen before the data (issue 21, part D): its versions, the freeze, deviations.

What the plan is and how it is hashed: results.plan_document. survey_publish freezes version 1 (plan_freeze). Until
the first real answer (live, not a pilot, not a bot) an edit re-freezes silently; after it, an edit is a deviation:
a new version that must give a reason, audit-logged, and listed by every report (plan_report) and by the
pre-registration export (results.plan_export).
"""
from __future__ import annotations

import copy
import json

from django.db import transaction
from django.db.models import Min

from backend.exceptions import ApplicationError
from surveys.counted_answers import Purpose, answers_counted
from surveys.models import Survey
from teams.actors import Actor
from teams.services import audit_record

from .models import AnalysisPlanVersion
from .plan_document import plan_canonical, plan_diff, plan_document, plan_sha256

# Survey fields the plan reads that may still be edited once a survey is built (the admin form, the API).
PLAN_EDITABLE_FIELDS = (
    "max_participants", "precision_every", "catch_min_accuracy", "rt_floor_ms", "rt_floor_max_fraction",
    "one_side_max_fraction", "one_side_min_trials", "practice_pass_fraction", "screening_pass_fraction",
    "exclude_mistimed", "refill_excluded", "desktop_only", "fixation_ms", "image_ms", "mask_ms",
)

PLAN_REASON_REQUIRED = (
    "reason: this survey has real answers, so a change to its analysis plan ({paths}) is a deviation from the "
    "frozen plan and needs a reason; nothing was saved."
)
BASELINE_REASON = "Recorded at its first edit: the survey went live before analysis plans were frozen at publish."
LATE_FREEZE_REASON = "Frozen at publish after the first real answer: the survey had gone live before plans were frozen."
NOT_FROZEN = "Not frozen yet: a draft's plan is frozen when it is published; this hash is the plan as it stands."
FROZEN_AFTER_DATA = "This plan was first recorded after the first real answer (the survey predates frozen plans)."
UNRECORDED = ("The survey's plan differs from its latest frozen version in {paths}: it was changed without going "
              "through the admin or the API, so no reason was given.")


def plan_locked(*, survey: Survey) -> bool:
    """Whether the survey has a real answer: live, not a pilot, not a bot (a rehearsal's bots are bots)."""
    return _real_answers(survey).exists()


def _real_answers(survey: Survey):
    return answers_counted(survey=survey, purpose=Purpose.PEOPLE)


def plan_versions(*, survey: Survey) -> list[AnalysisPlanVersion]:
    return list(AnalysisPlanVersion.objects.filter(survey=survey).select_related("created_by").order_by("version"))


def plan_changes(*, survey: Survey, values: dict) -> list[dict]:
    """What the plan would change by if `values` (survey field -> new value) were saved; nothing is saved."""
    return plan_diff(before=plan_document(survey=survey), after=plan_document(survey=_with(survey, values)))


def _version_add(*, survey: Survey, document: dict, previous: AnalysisPlanVersion | None, deviation: bool,
                 reason: str = "", user=None) -> AnalysisPlanVersion:
    canonical = plan_canonical(document=document)
    changed = plan_diff(before=json.loads(previous.canonical), after=document) if previous else []
    return AnalysisPlanVersion.objects.create(
        survey=survey, version=(previous.version + 1) if previous else 1, canonical=canonical,
        sha256=plan_sha256(canonical=canonical), changed=changed, deviation=deviation, reason=reason,
        created_by=user if getattr(user, "is_authenticated", False) else None,
    )


def _latest(survey: Survey) -> AnalysisPlanVersion | None:
    return AnalysisPlanVersion.objects.filter(survey=survey).order_by("-version").first()


@transaction.atomic
def plan_freeze(*, survey: Survey, actor: Actor | None = None) -> AnalysisPlanVersion:
    """At publish: store the plan (version 1), or a new version when it changed before the first real answer.

    Publishing again with the plan unchanged adds nothing. After the first real answer a changed plan is refused
    here: it is a deviation, recorded by plan_change with a reason."""
    Survey.objects.select_for_update().filter(pk=survey.pk).first()  # one version number at a time
    document, latest = plan_document(survey=survey), _latest(survey)
    if latest is not None and latest.canonical == plan_canonical(document=document):
        return latest
    locked = plan_locked(survey=survey)
    if latest is not None and locked:
        paths = ", ".join(d["path"] for d in plan_diff(before=json.loads(latest.canonical), after=document))
        raise ApplicationError(PLAN_REASON_REQUIRED.format(paths=paths), extra={"field": "reason"})
    version = _version_add(survey=survey, document=document, previous=latest, deviation=False,
                           reason=LATE_FREEZE_REASON if locked else "", user=_user(actor))
    audit_record(actor=actor, action="survey.plan_freeze", obj=survey,
                 details={"version": version.version, "sha256": version.sha256})
    return version


@transaction.atomic
def plan_change(*, survey: Survey, reason: str = "", actor: Actor | None = None, before: dict | None = None,
                values: dict | None = None) -> AnalysisPlanVersion | None:
    """Record the survey's plan after an edit: saves `values` (survey field -> value) first when given, then adds a
    version if the plan changed. After the first real answer the version is a deviation and `reason` is required
    (an ApplicationError naming the field, raised before anything is saved). `before`: the plan before an edit that
    was already saved, for a survey that went live without a frozen plan. Returns the new version, or None."""
    Survey.objects.select_for_update().filter(pk=survey.pk).first()
    latest, locked = _latest(survey), plan_locked(survey=survey)
    if latest is None and survey.status == Survey.Status.DRAFT:
        if values:
            _values_save(survey, values)
        return None  # a draft's plan is frozen at publish
    if latest is None:  # live before plans were frozen: its plan as it was becomes version 1
        latest = _version_add(survey=survey, document=before or plan_document(survey=survey), previous=None,
                              deviation=False, reason=BASELINE_REASON if locked else "", user=_user(actor))
    after = plan_document(survey=_with(survey, values)) if values else plan_document(survey=survey)
    changes = plan_diff(before=json.loads(latest.canonical), after=after)
    if not changes:
        if values:
            _values_save(survey, values)
        return None
    reason = (reason or "").strip()
    if locked and not reason:
        raise ApplicationError(PLAN_REASON_REQUIRED.format(paths=", ".join(c["path"] for c in changes)),
                               extra={"field": "reason", "changed": [c["path"] for c in changes]})
    if values:
        _values_save(survey, values)
    version = _version_add(survey=survey, document=after, previous=latest, deviation=locked, reason=reason,
                           user=_user(actor))
    audit_record(actor=actor, action="survey.plan_change" if locked else "survey.plan_freeze",
                 obj=survey, details={"version": version.version, "sha256": version.sha256, "deviation": locked,
                                      "changed": [c["path"] for c in changes], "reason": reason})
    return version


def _with(survey: Survey, values: dict) -> Survey:
    changed = copy.copy(survey)
    for field, value in values.items():
        setattr(changed, field, value)
    return changed


def _values_save(survey: Survey, values: dict) -> None:
    for field, value in values.items():
        setattr(survey, field, value)
    survey.save(update_fields=list(values))


def _user(actor: Actor | None):
    return actor.user if actor is not None else None


def plan_version_author(*, version: AnalysisPlanVersion) -> str:
    """Who made a plan version (their username); "" where no one is known (a freeze at publish by a task)."""
    user = version.created_by
    return user.get_username() if user is not None else ""


def plan_deviations(*, survey: Survey, versions: list[AnalysisPlanVersion] | None = None) -> list[dict]:
    """Every change made after the first real answer: version, hash, what changed (from → to), reason, when, who."""
    versions = plan_versions(survey=survey) if versions is None else versions
    return [
        {"version": v.version, "sha256": v.sha256, "changed": v.changed, "reason": v.reason,
         "at": v.created_at.isoformat(), "by": plan_version_author(version=v)}
        for v in versions if v.deviation
    ]


def plan_report(*, survey: Survey) -> dict:
    """The plan block of the report: the hash of the plan in force, the one frozen before the data, every deviation,
    and any change made around the services (the survey's plan now against its latest version)."""
    versions = plan_versions(survey=survey)
    document = plan_document(survey=survey)
    first = _real_answers(survey).aggregate(at=Min("created_at"))["at"]
    if not versions:
        canonical = plan_canonical(document=document)
        return {"frozen": False, "sha256": plan_sha256(canonical=canonical), "version": None, "frozen_sha256": None,
                "frozen_at": None, "first_real_answer_at": first.isoformat() if first else None, "deviations": [],
                "unrecorded_changes": [], "note": NOT_FROZEN}
    latest = versions[-1]
    before_data = [v for v in versions if not v.deviation]
    frozen = before_data[-1] if before_data else versions[0]
    stored = json.loads(latest.canonical)
    unrecorded = plan_diff(before=stored, after=document) if stored.get("schema") == document["schema"] else []
    notes = [FROZEN_AFTER_DATA] if first is not None and versions[0].created_at > first else []
    if unrecorded:
        notes.append(UNRECORDED.format(paths=", ".join(c["path"] for c in unrecorded)))
    return {
        "frozen": True, "sha256": latest.sha256, "version": latest.version, "frozen_sha256": frozen.sha256,
        "frozen_version": frozen.version, "frozen_at": frozen.created_at.isoformat(),
        "first_real_answer_at": first.isoformat() if first else None,
        "deviations": plan_deviations(survey=survey, versions=versions),
        "unrecorded_changes": unrecorded, "note": " ".join(notes),
    }

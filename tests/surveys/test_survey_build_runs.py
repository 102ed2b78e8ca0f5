"""A survey created in the admin is built by a worker (an operation run of kind survey_build): the request stores the
DRAFT survey and returns; the survey is "building" until the run is done, and publishing it before is refused
with the reason. The worker's survey is the one the same choices build in one process; a failed build leaves no
half-built trials and says why."""
import pytest
from django.test import Client

from backend.exceptions import ApplicationError
from operations.models import OperationRun
from operations.tasks import operation_run_execute
from surveys import operation_kinds
from surveys.models import Survey
from surveys.services import survey_create, survey_create_start, survey_publish
from surveys.services.build_runs import survey_build_state
from teams.actors import Actor
from tests.conftest import finished_iri_set, wait_for

pytestmark = pytest.mark.django_db

OPTIONS = {"title": "t", "foil_rule": "other_target", "catch_trials": 1, "practice_trials": 1, "rng_seed": 7,
           "ratings_per_list": 2, "trials_per_participant": 2}


def layout(survey: Survey) -> list[tuple]:
    """What a build decided, by trial, without the rows' own ids."""
    return sorted((t.kind, t.iri_id, t.target_option, t.trial_list.index if t.trial_list else None)
                  for t in survey.trials.select_related("trial_list"))


def test_the_worker_builds_the_survey_the_same_choices_build_in_one_process(
        iri_set, researcher, django_capture_on_commit_callbacks):
    at_once = survey_create(slug="at-once", iri_jobs=[iri_set], **OPTIONS)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        later = survey_create_start(slug="later", iri_jobs=[iri_set], actor=Actor.of_user(researcher), **OPTIONS)

    assert len(queued) == 1 and later.trials.count() == 0 and survey_build_state(survey=later) == "building"
    with pytest.raises(ApplicationError, match="still being built by a worker"):
        survey_publish(survey=later)

    run = OperationRun.objects.get(kind="survey_build", subject_id=later.pk)
    operation_run_execute(run.pk)

    later.refresh_from_db()
    assert survey_build_state(survey=later) == "built" and layout(later) == layout(at_once) != []
    assert later.build_report == at_once.build_report and later.slots.count() == at_once.slots.count()
    assert survey_publish(survey=later).status == Survey.Status.LIVE


def test_a_failed_build_leaves_no_half_built_trials_and_publishing_says_why(
        iri_set, researcher, django_capture_on_commit_callbacks, monkeypatch):
    build = operation_kinds.survey_trials_build

    def fails_after_the_trials(**kwargs):
        survey = build(**kwargs)
        assert survey.trials.exists()
        raise ApplicationError("The photo store is full.")

    monkeypatch.setattr(operation_kinds, "survey_trials_build", fails_after_the_trials)
    with django_capture_on_commit_callbacks(execute=False):
        survey = survey_create_start(slug="broken", iri_jobs=[iri_set], actor=Actor.of_user(researcher), title="t")
    operation_run_execute(OperationRun.objects.get(kind="survey_build").pk)

    assert OperationRun.objects.get(kind="survey_build").error == "The photo store is full."
    assert survey_build_state(survey=survey) == "failed" and not survey.trials.exists() and not survey.slots.exists()
    with pytest.raises(ApplicationError, match=r"its build failed \(The photo store is full\)"):
        survey_publish(survey=survey)


@pytest.mark.django_db(transaction=True)
def test_the_admin_request_returns_before_the_build_and_a_real_worker_builds_it(celery_worker_starter, researcher,
                                                                                photos):
    iri_set = finished_iri_set(photos)
    client = Client()
    client.force_login(researcher)
    form = client.get("/admin/surveys/survey/add/").context["adminform"].form
    values = {name: field.initial() if callable(field.initial) else field.initial
              for name, field in form.fields.items() if field.initial is not None}
    values.update({"slug": "by-worker", "title": "t", "iri_jobs": [iri_set.pk], "foil_rule": "seed",
                   "trials_per_participant": "", "consent_md": "ok", "instructions_md": "go"})

    assert client.post("/admin/surveys/survey/add/", values).status_code == 302
    survey = Survey.objects.get(slug="by-worker")
    assert survey.trials.count() == 0 and survey_build_state(survey=survey) == "building", "no worker has run yet"
    listed = client.get("/admin/surveys/survey/").content.decode()
    assert '<td class="field-build_state">building</td>' in listed

    celery_worker_starter()
    wait_for(lambda: survey_build_state(survey=survey) != "building")

    assert survey_build_state(survey=survey) == "built" and survey.trials.count() == 3
    page = client.get(f"/admin/surveys/survey/{survey.pk}/change/").content.decode()
    assert "survey build Done (100%)" in page and "no IRI left out" in page
    assert survey_publish(survey=survey).status == Survey.Status.LIVE

"""Operation runs (issue 22, part A): one model, one Celery task and one registry for the long-running work the
apps hand to a worker. A kind is registered by the app that does the work; a run goes QUEUED, RUNNING, then DONE
with its result or FAILED with a sentence; each team sees only its own runs."""
import pytest
from django.contrib.contenttypes.models import ContentType

from backend.celery import app as celery_app
from backend.exceptions import ApplicationError
from operations import registry
from operations.models import OperationRun
from operations.registry import operation_kind_get, operation_kind_register
from operations.selectors import operation_run_get, operation_run_list
from operations.services import EXECUTE_TASK, TASK_QUEUE_DOWN, operation_run_create
from operations.tasks import operation_run_execute
from teams.actors import Actor
from teams.models import Role
from teams.services import membership_set, team_create
from tests.factories import TargetPhotoFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def kinds(monkeypatch):
    """The registry as the apps left it, restored after the test (so a toy kind does not outlive it)."""
    monkeypatch.setattr(registry, "_KINDS", dict(registry._KINDS))
    return registry


@pytest.fixture
def photo(team):
    return TargetPhotoFactory(team=team)


def started(kind: str, subject, actor, capture, params=None) -> OperationRun:
    """A run created as a page would create it: (the run), its task sent once the transaction commits."""
    with capture(execute=False) as enqueued:
        run = operation_run_create(kind=kind, subject=subject, params=params or {}, actor=Actor.of_user(actor))
    assert len(enqueued) == 1
    return run


def test_a_run_goes_from_queued_to_running_to_done_with_its_progress_and_result(
        kinds, photo, researcher, django_capture_on_commit_callbacks):
    seen = {}

    def count_pixels(run, progress):
        seen["status"] = OperationRun.objects.get(pk=run.pk).status
        progress(0.5, "half of the photo")
        seen["progress"] = OperationRun.objects.values_list("progress", "progress_message").get(pk=run.pk)
        return {"name": run.subject.name, "limit": run.params["limit"]}

    operation_kind_register("toy.pixels", count_pixels, label="pixel count")
    run = started("toy.pixels", photo, researcher, django_capture_on_commit_callbacks, params={"limit": 3})
    assert run.status == OperationRun.Status.QUEUED and run.team == photo.team and run.subject == photo
    assert str(run) == f"pixel count of {photo}: Queued"

    operation_run_execute(run.pk)  # what the worker does

    run.refresh_from_db()
    assert seen == {"status": "RUNNING", "progress": (0.5, "half of the photo")}
    assert run.status == OperationRun.Status.DONE and run.progress == 1.0
    assert run.result == {"name": photo.name, "limit": 3} and run.created_by == researcher
    assert run.created_at <= run.started_at <= run.finished_at


def test_an_unknown_kind_is_refused_before_anything_is_queued_and_the_refusal_names_the_known_kinds(
        photo, researcher, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as enqueued, pytest.raises(ApplicationError) as refused:
        operation_run_create(kind="proxies", subject=photo, params={}, actor=Actor.of_user(researcher))

    assert "No operation kind 'proxies'" in refused.value.message
    known = refused.value.message.split("the known kinds are ")[1].split(". ")[0].split(", ")
    assert {"archive", "bots", "proxy"} <= set(known) and known == sorted(known)  # what the apps register, sorted
    assert not enqueued and not OperationRun.objects.exists()


def test_a_run_whose_kind_the_worker_does_not_know_fails_with_the_same_hint(team):
    run = OperationRun.objects.create(team=team, kind="retired")

    operation_run_execute(run.pk)

    run.refresh_from_db()
    assert run.status == OperationRun.Status.FAILED and "No operation kind 'retired'" in run.error
    assert "the known kinds are" in run.error


def test_a_failure_is_kept_as_a_sentence_and_never_as_a_traceback(kinds, photo, researcher,
                                                                   django_capture_on_commit_callbacks):
    def refuses(run, progress):
        raise ApplicationError("The photo is too small to count.")

    def breaks(run, progress):
        progress(0.25)
        raise ValueError("pixel 7 is not a number")

    operation_kind_register("toy.refuses", refuses)
    operation_kind_register("toy.breaks", breaks)
    refused = started("toy.refuses", photo, researcher, django_capture_on_commit_callbacks)
    broken = started("toy.breaks", photo, researcher, django_capture_on_commit_callbacks)

    operation_run_execute(refused.pk)
    operation_run_execute(broken.pk)

    refused.refresh_from_db()
    broken.refresh_from_db()
    assert refused.status == broken.status == OperationRun.Status.FAILED
    assert refused.error == "The photo is too small to count."
    assert broken.error == "ValueError: pixel 7 is not a number" and broken.progress == 0.25
    assert refused.finished_at is not None and broken.finished_at is not None


def test_a_second_delivery_of_the_task_does_nothing(kinds, photo, researcher, django_capture_on_commit_callbacks):
    calls = []
    operation_kind_register("toy.once", lambda run, progress: calls.append(run.pk) or {"n": len(calls)})
    run = started("toy.once", photo, researcher, django_capture_on_commit_callbacks)

    operation_run_execute(run.pk)
    operation_run_execute(run.pk)  # the broker delivered it again

    run.refresh_from_db()
    assert calls == [run.pk] and run.result == {"n": 1}


def test_with_the_broker_down_the_run_says_so_instead_of_waiting(kinds, photo, researcher, monkeypatch,
                                                                  django_capture_on_commit_callbacks):
    operation_kind_register("toy.never", lambda run, progress: {})

    def down(*args, **kwargs):
        raise ConnectionError("Connection refused")

    monkeypatch.setattr(celery_app, "send_task", down)
    with django_capture_on_commit_callbacks(execute=True):
        run = operation_run_create(kind="toy.never", subject=photo, params={}, actor=Actor.of_user(researcher))

    run.refresh_from_db()
    assert run.status == OperationRun.Status.FAILED
    assert run.error == TASK_QUEUE_DOWN.format(error="Connection refused")


def test_runs_are_sent_to_the_one_task_by_its_name(kinds, photo, researcher, monkeypatch,
                                                  django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr(celery_app, "send_task", lambda name, **kwargs: sent.append((name, kwargs["args"])))
    operation_kind_register("toy.sent", lambda run, progress: {})

    with django_capture_on_commit_callbacks(execute=True):
        run = operation_run_create(kind="toy.sent", subject=photo, params={}, actor=Actor.of_user(researcher))

    assert sent == [(EXECUTE_TASK, (run.pk,))] and operation_run_execute.name == EXECUTE_TASK
    assert EXECUTE_TASK in celery_app.tasks  # the worker knows it by that name


def test_a_kind_name_belongs_to_one_function(kinds):
    def first(run, progress):
        return {}

    def second(run, progress):
        return {}

    operation_kind_register("toy.name", first)
    operation_kind_register("toy.name", first)  # an app's ready() run twice: the same registration

    with pytest.raises(ValueError, match="registered twice"):
        operation_kind_register("toy.name", second)
    assert operation_kind_get("toy.name").function is first


def test_the_apps_register_the_work_they_own():
    assert operation_kind_get("proxy").label == "proxy choices"
    assert operation_kind_get("archive").function.__module__ == "results.archive"
    assert operation_kind_get("bots").function.__module__ == "surveys.operation_kinds"


def test_each_team_sees_only_its_own_runs(team, photo, django_user_model):
    lab_b = team_create(name="Lab B")
    b_photo = TargetPhotoFactory(team=lab_b, photo=1)
    b_member = django_user_model.objects.create_user(username="bob")
    a_viewer = django_user_model.objects.create_user(username="vic")
    membership_set(team=lab_b, user=b_member, role=Role.RESEARCHER)
    membership_set(team=team, user=a_viewer, role=Role.VIEWER)
    photo_type = ContentType.objects.get_for_model(photo)
    a_proxy = OperationRun.objects.create(team=team, kind="proxy", subject_type=photo_type, subject_id=photo.pk)
    a_bots = OperationRun.objects.create(team=team, kind="bots", subject_type=photo_type, subject_id=photo.pk)
    b_proxy = OperationRun.objects.create(team=lab_b, kind="proxy", subject_type=photo_type, subject_id=b_photo.pk)

    assert list(operation_run_list(user=a_viewer)) == [a_bots, a_proxy]  # newest first
    assert list(operation_run_list(user=a_viewer, kind="proxy")) == [a_proxy]
    assert list(operation_run_list(user=b_member)) == [b_proxy]
    assert list(operation_run_list(user=b_member, subject=photo)) == []  # another team's subject: nothing
    assert operation_run_get(user=a_viewer, run_id=a_proxy.pk) == a_proxy
    with pytest.raises(ApplicationError) as hidden:
        operation_run_get(user=b_member, run_id=a_proxy.pk)
    assert hidden.value.status_code == 404

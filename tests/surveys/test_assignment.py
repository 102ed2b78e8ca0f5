"""Assignment on PostgreSQL: slots, reservations and their expiry, quotas, resume policies, MTurk, repeat workers."""
from datetime import timedelta

import pytest
import yaml
from django.utils import timezone
from rest_framework.test import APIClient

from backend.exceptions import ApplicationError
from surveys.models import Participant, Response, Slot
from surveys.services import (
    HEARTBEAT_HOLD_S,
    participant_complete,
    participant_consent,
    participant_enroll,
    reservations_release_expired,
    response_record,
    survey_create,
    survey_publish,
)
from surveys.tasks import reservations_release_expired_task
from tests.conftest import finished_iri_set, new_key

pytestmark = pytest.mark.django_db


def live(iri_set, **fields):
    return survey_publish(survey=survey_create(slug=fields.pop("slug", "s"), title="t", iri_jobs=[iri_set], **fields))


def answer_all(participant, choose=lambda t: t.target_option):
    """Answer every trial with the option `choose` names, at the screen position this participant sees it."""
    participant_consent(participant=participant)
    for a in participant.assignments.select_related("trial"):
        choice = choose(a.trial)
        position = a.option_order.index(str(choice)) if a.option_order else choice  # classification: no layout
        response_record(token=participant.token, trial_public_id=a.trial.public_id, choice=position, rt_ms=700, idempotency_key=new_key())
    return participant_complete(participant=participant)


def test_lists_fill_breadth_first_so_their_counts_never_differ_by_more_than_one(iri_set):
    survey = live(iri_set, trials_per_participant=1, ratings_per_list=4)
    assert survey.trial_lists.count() == 3
    for k in range(7):
        participant_enroll(survey=survey, prolific_pid=f"P{k}")
        taken = [tl.slots.filter(is_pilot=False).exclude(participant=None).count() for tl in survey.trial_lists.all()]
        assert max(taken) - min(taken) <= 1


def test_a_full_study_refuses_with_409_and_stores_nothing(iri_set):
    survey = live(iri_set, trials_per_participant=3, ratings_per_list=1)
    participant_enroll(survey=survey, prolific_pid="first")

    with pytest.raises(ApplicationError) as refused:
        participant_enroll(survey=survey, prolific_pid="second")

    assert refused.value.status_code == 409 and refused.value.extra == {"reason": "full"}
    assert list(Participant.objects.values_list("prolific_pid", flat=True)) == ["first"]


def test_a_quota_caps_live_slots_but_not_pilot_ones(iri_set):
    survey = live(iri_set, trials_per_participant=1, ratings_per_list=5, max_participants=2)
    participant_enroll(survey=survey, prolific_pid="a")
    participant_enroll(survey=survey, prolific_pid="b")
    with pytest.raises(ApplicationError):
        participant_enroll(survey=survey, prolific_pid="c")
    pilot, created = participant_enroll(survey=survey, pilot=True)
    assert created and pilot.is_pilot and pilot.slots.get().is_pilot


def test_an_expired_reservation_goes_to_the_next_person_and_its_holder_times_out(iri_set):
    survey = live(iri_set, trials_per_participant=3, ratings_per_list=1)
    slow, _ = participant_enroll(survey=survey, prolific_pid="slow")
    Slot.objects.filter(participant=slow).update(reserved_until=timezone.now() - timedelta(seconds=1))

    quick, created = participant_enroll(survey=survey, prolific_pid="quick")

    assert created and quick.slots.get().trial_list_id == slow.trial_list_id
    slow.refresh_from_db()
    assert slow.status == "timed_out"
    # The slow one's late answers and completion cannot give the list an N + 1st rating.
    trial = slow.assignments.first().trial
    with pytest.raises(ApplicationError) as ended:
        response_record(token=slow.token, trial_public_id=trial.public_id, choice=0, rt_ms=500, idempotency_key=new_key())
    assert ended.value.extra["reason"] == "ended"
    assert answer_all(quick).status == "completed"
    assert Slot.objects.filter(filled_at__isnull=False).count() == 1


def test_the_periodic_cleanup_releases_expired_reservations(iri_set):
    survey = live(iri_set, trials_per_participant=3, ratings_per_list=2)
    gone, _ = participant_enroll(survey=survey, prolific_pid="gone")
    participant_enroll(survey=survey, prolific_pid="here")
    Slot.objects.filter(participant=gone).update(reserved_until=timezone.now() - timedelta(minutes=1))

    assert reservations_release_expired() == 1

    gone.refresh_from_db()
    assert gone.status == "timed_out" and Slot.objects.filter(participant__isnull=True, is_pilot=False).count() == 1


@pytest.mark.parametrize("policy", ["resume", "restart", "block"])
def test_a_returning_prolific_id_meets_the_resume_policy(iri_set, policy):
    survey = live(iri_set, resume_policy=policy)
    first, _ = participant_enroll(survey=survey, prolific_pid="again")
    participant_consent(participant=first)
    trial = first.assignments.first().trial
    response_record(token=first.token, trial_public_id=trial.public_id, choice=0, rt_ms=500, idempotency_key=new_key())

    if policy == "block":
        with pytest.raises(ApplicationError) as blocked:
            participant_enroll(survey=survey, prolific_pid="again", token=first.token)
        assert blocked.value.extra == {"reason": "blocked"}
        return
    back, created = participant_enroll(survey=survey, prolific_pid="again", token=first.token)

    assert not created and back.pk == first.pk and Participant.objects.count() == 1
    assert Slot.objects.filter(participant=back).count() == 1
    if policy == "resume":
        assert back.responses.count() == 1 and back.consented_at is not None
    else:
        assert back.restarted and back.responses.count() == 0 and back.consented_at is None and back.restarts == 1


def test_a_prolific_id_typed_into_another_browser_does_not_get_the_session(iri_set):
    survey = live(iri_set)
    first, _ = participant_enroll(survey=survey, prolific_pid="P1")
    client = APIClient()

    other = client.post(f"/api/p/surveys/{survey.slug}/enroll", {"prolific_pid": "P1"}, format="json")
    guessed = client.post(f"/api/p/surveys/{survey.slug}/enroll", {"prolific_pid": "P1", "token": "not-it"}, format="json")
    holder = client.post(f"/api/p/surveys/{survey.slug}/enroll", {"prolific_pid": "P1", "token": first.token}, format="json")

    for refused in (other, guessed):
        assert refused.status_code == 409 and refused.json()["extra"] == {"reason": "duplicate"}
        assert first.token not in refused.content.decode() and "another browser" in refused.json()["message"]
    assert holder.status_code == 200 and holder.json()["token"] == first.token
    attempts = first.events.filter(type="duplicate_enroll")
    assert attempts.count() == 2 and Participant.objects.count() == 1


def test_a_finished_worker_cannot_take_the_study_twice(iri_set):
    survey = live(iri_set)
    client = APIClient()
    body = {"worker_id": "W1", "assignment_id": "A1", "hit_id": "H1", "turk_submit_to": "https://workersandbox.mturk.com"}
    token = client.post(f"/api/p/surveys/{survey.slug}/enroll", body, format="json").json()["token"]
    answer_all(Participant.objects.get(token=token))

    again = client.post(f"/api/p/surveys/{survey.slug}/enroll", {**body, "assignment_id": "A2", "token": token}, format="json")

    assert again.status_code == 200 and again.json()["token"] == token and again.json()["status"] == "completed"
    assert again.json()["mturk_submit"] == {
        "action": "https://workersandbox.mturk.com/mturk/externalSubmit", "method": "POST",
        "fields": {"assignmentId": "A1", "completion_code": survey.completion_code},
    }
    assert Participant.objects.count() == 1


def test_an_mturk_preview_stores_and_reserves_nothing(iri_set):
    survey = live(iri_set)

    preview = APIClient().post(f"/api/p/surveys/{survey.slug}/enroll",
                               {"assignment_id": "ASSIGNMENT_ID_NOT_AVAILABLE", "hit_id": "H"}, format="json")

    assert preview.status_code == 200 and preview.json()["preview"] is True and "token" not in preview.json()
    assert not Participant.objects.exists() and not Slot.objects.exclude(participant=None).exists()


def test_a_foreign_turk_submit_address_is_refused(iri_set):
    survey = live(iri_set)
    with pytest.raises(ApplicationError):
        participant_enroll(survey=survey, worker_id="W", assignment_id="A", turk_submit_to="https://evil.example")


def test_failing_the_catch_trials_gives_the_failed_attention_code_and_frees_the_slot(iri_set):
    survey = live(iri_set, trials_per_participant=3, ratings_per_list=1, catch_trials=2)
    careless, _ = participant_enroll(survey=survey, prolific_pid="careless")

    done = answer_all(careless, choose=lambda t: 1 - t.target_option if t.kind == "catch" else t.target_option)

    assert done.status == "failed_attention" and done.excluded and done.exclusion_reasons == ["catch_accuracy"]
    assert done.catch_accuracy == 0.0
    assert not Slot.objects.filter(is_pilot=False).exclude(participant=None).exists()  # the list gets someone else
    client = APIClient()
    code = client.post(f"/api/p/sessions/{careless.token}/complete").json()
    assert code["outcome"] == "failed_attention" and code["completion_code"] == survey.code_failed_attention


def test_answers_faster_than_the_floor_flag_the_session(iri_set):
    survey = live(iri_set, rt_floor_ms=300)
    fast, _ = participant_enroll(survey=survey)
    participant_consent(participant=fast)
    for a in fast.assignments.select_related("trial"):
        response_record(token=fast.token, trial_public_id=a.trial.public_id, choice=0, rt_ms=90, idempotency_key=new_key())

    done = participant_complete(participant=fast)

    assert done.status == "completed" and done.excluded and done.exclusion_reasons == ["rt_floor"]


def test_practice_gives_feedback_and_a_failed_practice_ends_the_session(iri_set):
    survey = live(iri_set, practice_trials=2, practice_pass_fraction=1.0)
    client = APIClient()
    token = client.post(f"/api/p/surveys/{survey.slug}/enroll", {}, format="json").json()["token"]
    client.post(f"/api/p/sessions/{token}/consent")
    session = client.get(f"/api/p/sessions/{token}/trials").json()
    assert len(session["practice"]) == 2 and session["total"] == 3
    answers = []
    for trial in session["practice"]:
        a = Participant.objects.get(token=token).assignments.select_related("trial").get(trial__public_id=trial["id"])
        wrong = a.option_order.index(str(1 - a.trial.target_option))
        body = {"trial": trial["id"], "choice": wrong, "rt_ms": 600, "idempotency_key": new_key()}
        answers.append(client.post(f"/api/p/sessions/{token}/responses", body, format="json").json())

    assert answers[0]["feedback"] == {"correct": False} and answers[0]["practice"]["passed"] is None
    assert answers[1]["practice"] == {"done": 2, "total": 2, "passed": False}
    main = session["trials"][0]
    refused = client.post(f"/api/p/sessions/{token}/responses", {"trial": main["id"], "choice": 0, "rt_ms": 500, "idempotency_key": new_key()}, format="json")
    assert refused.status_code == 409 and refused.json()["extra"]["reason"] == "ended"
    assert client.post(f"/api/p/sessions/{token}/complete").json()["completion_code"] == survey.code_failed_attention


def test_events_heartbeat_and_return_are_recorded(iri_set):
    survey = live(iri_set)
    client = APIClient()
    token = client.post(f"/api/p/surveys/{survey.slug}/enroll", {"client": {"window_w": 800, "dpr": 2}}, format="json").json()["token"]
    key = new_key()
    batch = {"events": [{"id": key, "type": "blur", "t_ms": 10.5}, {"id": new_key(), "type": "fullscreen_exit"}], "client": {"screen_w": 1920}}

    assert client.post(f"/api/p/sessions/{token}/events", batch, format="json").json() == {"stored": 2}
    assert client.post(f"/api/p/sessions/{token}/events", batch, format="json").json() == {"stored": 0}
    assert client.post(f"/api/p/sessions/{token}/heartbeat", {"stage": "trials"}, format="json").json()["status"] == "active"
    participant = Participant.objects.get(token=token)
    assert participant.client_info == {"window_w": 800, "dpr": 2.0, "screen_w": 1920} and participant.stage == "trials"
    left = client.post(f"/api/p/sessions/{token}/return").json()
    assert left["outcome"] == "returned" and left["completion_code"] == survey.code_timed_out
    assert not Slot.objects.exclude(participant=None).exists()


def test_clustering_screens_have_three_references_and_two_iris_each(photos):
    a, b = finished_iri_set(photos, rng_seed=1), finished_iri_set(photos, rng_seed=2)
    survey = survey_publish(survey=survey_create(slug="c", title="t", iri_jobs=[a, b], task_type="cluster",
                                                 cluster_variant="hard", catch_trials=1, practice_trials=3))
    main = survey.trials.filter(kind="main")
    assert main.count() == 6 and {t.n_options for t in survey.trials.all()} == {3}
    for t in main.select_related("iri"):
        assert t.option_ids[t.target_option] == t.iri.target_image_id
    client = APIClient()
    token = client.post(f"/api/p/surveys/c/enroll", {}, format="json").json()["token"]
    session = client.get(f"/api/p/sessions/{token}/trials").json()
    # One main screen of six IRIs and one catch screen of its own (three natural photos, one row).
    assert session["task_type"] == "cluster" and sorted(len(s["items"]) for s in session["screens"]) == [1, 6]
    assert len(session["practice_screens"]) == 1 and all(len(s["references"]) == 3 for s in session["screens"])
    client.post(f"/api/p/sessions/{token}/consent")
    row = session["trials"][0]
    ok = client.post(f"/api/p/sessions/{token}/responses", {"trial": row["id"], "choice": 2, "rt_ms": 900, "idempotency_key": new_key()}, format="json")
    shown = Participant.objects.get(token=token).assignments.get(trial__public_id=row["id"]).option_order
    assert ok.status_code == 201 and Response.objects.get().choice == int(shown[2]) and Response.objects.get().shown_position == 2


def test_the_same_set_foil_is_another_target_of_that_set(iri_set):
    survey = survey_create(slug="ss", title="t", iri_jobs=[iri_set], foil_rule="same_set")
    for t in survey.trials.select_related("iri"):
        foil = t.option_ids[1 - t.target_option]
        assert foil in set(iri_set.images.exclude(pk=t.iri_id).values_list("target_image_id", flat=True))


def test_a_heartbeat_keeps_a_present_participants_reservation_but_not_forever(iri_set):
    survey = live(iri_set, trials_per_participant=1, ratings_per_list=3, time_limit_minutes=10)
    present, _ = participant_enroll(survey=survey, prolific_pid="present")
    gone, _ = participant_enroll(survey=survey, prolific_pid="gone")
    now = timezone.now()
    Slot.objects.filter(participant__in=[present, gone]).update(reserved_until=now + timedelta(seconds=20))
    client = APIClient()

    beat = client.post(f"/api/p/sessions/{present.token}/heartbeat", {"stage": "trials"}, format="json").json()

    assert beat["expires_in_s"] >= HEARTBEAT_HOLD_S - 5
    assert Slot.objects.get(participant=gone).reserved_until == now + timedelta(seconds=20)
    # Never beyond twice the time limit after enrollment, and an expired reservation is not revived.
    Participant.objects.filter(pk=present.pk).update(created_at=now - timedelta(minutes=19))
    Slot.objects.filter(participant=present).update(reserved_until=now + timedelta(seconds=20))
    client.post(f"/api/p/sessions/{present.token}/heartbeat", {}, format="json")
    assert now + timedelta(seconds=20) < Slot.objects.get(participant=present).reserved_until <= now + timedelta(minutes=1, seconds=1)
    Slot.objects.filter(participant=gone).update(reserved_until=now - timedelta(seconds=1))
    client.post(f"/api/p/sessions/{gone.token}/heartbeat", {}, format="json")
    assert Slot.objects.get(participant=gone).reserved_until < timezone.now()


def test_celery_beat_releases_expired_reservations_every_minute_in_the_compose_stack(settings):
    (entry,) = [e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == reservations_release_expired_task.name]
    assert entry["schedule"] <= 60
    compose = yaml.safe_load((settings.BASE_DIR / "docker-compose.yml").read_text())
    beat = compose["services"]["beat"]
    assert beat["image"] == compose["services"]["web"]["image"]
    assert beat["command"][:4] == ["celery", "-A", "backend", "beat"]

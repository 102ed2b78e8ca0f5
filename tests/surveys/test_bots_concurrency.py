"""Hundreds of bots at once on a real gunicorn server and PostgreSQL: every list ends with exactly N ratings."""
import json
import time
from datetime import datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from surveys.bots import bots_run
from surveys.models import Participant, Response, Slot, Survey
from surveys.services import reservations_release_expired, survey_create, survey_publish
from tests.surveys import gunicorn_server
from tests.surveys.test_adaptive_collection import adaptive, four_sets  # noqa: F401 (a fixture)


@pytest.fixture(scope="module")
def gunicorn_8_workers(django_db_setup, tmp_path_factory):
    """Eight gunicorn workers on the test database, started once for the module (20-30 s of imports on 2 cores):
    each test flushes the database after itself, and its surveys have slugs of their own."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: run through `make test` (DATABASE_URL)")
    media = tmp_path_factory.getbasetemp() / "media"  # the folder the autouse media_root fixture gives each test
    media.mkdir(exist_ok=True)
    proc, url = gunicorn_server.start(workers=8, env={"DJANGO_MEDIA_ROOT": str(media)})
    yield url
    gunicorn_server.stop(proc)


@pytest.fixture
def server(transactional_db, gunicorn_8_workers):
    return gunicorn_8_workers


def test_220_bots_fill_every_list_to_exactly_n_with_nothing_lost_or_doubled(transactional_db, server, iri_set):
    # 3 lists (one trial each) × N = 50 → 150 live slots, one catch trial per list; 220 bots want in.
    survey = survey_publish(
        survey=survey_create(slug="crowd", title="t", iri_jobs=[iri_set], trials_per_participant=1,
                             ratings_per_list=50, catch_trials=1)
    )

    first = bots_run(base_url=server, slug="crowd", participants=220, concurrency=64, policy="perceptual", live=True, seed=1)

    assert (first["errors"], first["lost"], first["duplicates"]) == (0, 0, 0), first
    assert first["full"] > 0 and first["dropped"] > 0 and first["double_posts_refused"] > 0
    # Nobody holds two reservations, and no list is over N.
    assert not Slot.objects.values("participant").exclude(participant=None).annotate(n=Count("id")).filter(n__gt=1).exists()
    assert all(s.filled_at is None or s.participant_id for s in Slot.objects.all())

    # Time passes: the dropouts' reservations expire and are released; a second wave fills what is left.
    Slot.objects.filter(filled_at__isnull=True, participant__isnull=False).update(reserved_until=timezone.now() - timedelta(seconds=1))
    assert reservations_release_expired() == first["dropped"]
    second = bots_run(base_url=server, slug="crowd", participants=120, concurrency=32, policy="perceptual", live=True,
                      cases=("attentive",), seed=2)

    assert (second["errors"], second["lost"], second["duplicates"]) == (0, 0, 0), second
    assert second["full"] > 0
    for trial_list in survey.trial_lists.all():
        filled = trial_list.slots.filter(is_pilot=False, filled_at__isnull=False)
        assert filled.count() == survey.ratings_per_list
        counted = Participant.objects.filter(slots__in=filled)
        # Every rating that counts is a complete, non-excluded session with one answer per assigned trial.
        assert not counted.exclude(status="completed").exists() and not counted.filter(excluded=True).exists()
        per_trial = Response.objects.filter(participant__in=counted).values("trial").annotate(n=Count("id"))
        assert {row["n"] for row in per_trial} == {survey.ratings_per_list}
    assert not Participant.objects.filter(is_bot=False).exists()


def test_run_bots_prints_one_json_line_in_pilot_mode(transactional_db, server, iri_set):
    survey_create(slug="draft", title="t", iri_jobs=[iri_set], ratings_per_list=3, practice_trials=2)
    out = StringIO()

    call_command("run_bots", "draft", "--participants", "6", "--concurrency", "3", "--policy", "target",
                 "--base-url", server, "--attentive-only", stdout=out)

    summary = json.loads(out.getvalue())
    assert {"completed", "responses", "duplicates", "lost", "errors"} <= set(summary)
    assert summary["completed"] == 3 and summary["full"] == 3 and summary["errors"] == 0
    assert summary["responses"] == 3 * (3 + 2)
    assert set(Participant.objects.values_list("is_pilot", "is_bot")) == {(True, True)}
    assert not Slot.objects.filter(is_pilot=False).exclude(participant=None).exists()
    assert Survey.objects.get().status == Survey.Status.DRAFT


def test_adaptive_collection_closes_exactly_at_the_goal_under_concurrent_participants(transactional_db, server, four_sets):
    # Four IRI sets, lists of two sets each, N = 20; people answer at random (alignment 0.5, the widest interval),
    # so every set needs about 45 answers for a half-width of 0.15: far fewer than the 8 lists × 20 places.
    survey = adaptive(four_sets, slug="adaptive-crowd", ratings_per_list=20, precision_goal=0.15)
    deadlocks_before = deadlocks()

    run = bots_run(base_url=server, slug=survey.slug, participants=90, concurrency=24, policy="random", live=True,
                   cases=("attentive", "attentive", "double_post", "dropout"), seed=3, as_people=True)

    assert (run["errors"], run["lost"], run["duplicates"]) == (0, 0, 0), run
    # Enrollments wait for each other on the survey row, and never deadlock (retries would hide it from the bots).
    assert deadlocks() == deadlocks_before
    # Arrivals while every open set waits on the answers of the sessions under way are turned away for now, and the
    # dropouts hold their places until they time out (as a platform's places are held by a submission that is not
    # returned). The periodic sweep then frees them and re-estimates; later people come in small waves.
    dropouts = Participant.objects.filter(survey=survey, status=Participant.Status.ACTIVE).count()
    assert dropouts and not Survey.objects.get(pk=survey.pk).adaptive_state["stop"]
    assert reservations_release_expired(now=timezone.now() + timedelta(days=1)) >= dropouts
    waves = 0
    while not Survey.objects.get(pk=survey.pk).adaptive_state["stop"] and waves < 10:
        more = bots_run(base_url=server, slug=survey.slug, participants=8, concurrency=4, policy="random", live=True,
                        cases=("attentive",), seed=10 + waves, as_people=True)
        assert (more["errors"], more["lost"]) == (0, 0), more
        waves += 1
    survey.refresh_from_db()
    state = survey.adaptive_state
    # The goal stops collection only once every session under way has ended, with every set within it.
    assert state["stop"] and state["reason"] == "goal" and all(state["done"]), state
    # Whoever comes once collection has stopped is turned away with the full page (on a busy machine the first
    # wave may all get in before the goal is met, so the late arrivals are a second wave).
    late = bots_run(base_url=server, slug=survey.slug, participants=6, concurrency=3, policy="random", live=True,
                    cases=("attentive",), seed=4, as_people=True)
    assert late["full"] == 6 and late["completed"] == 0, late
    # Closed exactly at the goal: no session was admitted once the estimate that met it had been written.
    stopped_at = datetime.fromisoformat(state["stopped_at"])
    assert not Participant.objects.filter(survey=survey, created_at__gt=stopped_at).exists()
    # No block over-filled, nobody holding two places in one block or more blocks than a session has.
    for trial_list in survey.trial_lists.all():
        assert trial_list.slots.filter(is_pilot=False, filled_at__isnull=False).count() <= survey.ratings_per_list
    held = Slot.objects.exclude(participant=None)
    assert not held.values("participant", "trial_list").annotate(n=Count("id")).filter(n__gt=1).exists()
    blocks = survey.adaptive_state["blocks_per_participant"]
    assert not held.values("participant").annotate(n=Count("id")).filter(n__gt=blocks).exists()
    assert Participant.objects.filter(survey=survey).count() < 8 * 20


def deadlocks() -> int:
    """PostgreSQL's count of deadlocks in this database (its statistics reach other sessions within a second)."""
    time.sleep(1.5)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]

"""Piloting a timed classification survey with bots over real HTTP: they walk practice, the screening block and the
main trials, name categories and report what a 60 Hz browser measured. Bots that click at random are screened out
(and counted so), bots that know the categories pass and complete, and every acknowledged answer is stored once."""
from collections import Counter


from surveys.bots import bots_run
from surveys.models import Participant, Response, Trial
from tests.surveys.test_classification import classification, labelled_photos

PER_SESSION = {"practice": 2, "screening": 3, "main": 7}  # 6 main trials and a catch trial


def test_a_bot_pilot_screens_out_random_clickers_and_lets_the_knowing_complete(server, team):
    # Three screening photos that must all be right; practice turns nobody away, so every bot reaches the screening.
    iri_set, _ = labelled_photos(team)
    survey = classification(iri_set, screening_pass_fraction=1.0, practice_pass_fraction=0.0, image_ms=200,
                            ratings_per_list=30)
    flow = ("attentive", "reload", "double_post", "offline")  # resumes, replays and lost acknowledgements too

    # First wave: people who click at random pass three 1-in-3 guesses once in 27 times.
    clickers = bots_run(base_url=server, slug=survey.slug, participants=12, concurrency=4, policy="random", seed=2,
                        cases=flow)

    assert (clickers["errors"], clickers["lost"], clickers["duplicates"]) == (0, 0, 0), clickers
    assert clickers["screened_out"] >= 9, clickers
    assert clickers["screened_out"] + clickers["completed"] + clickers["failed_attention"] == 12, clickers
    assert Counter(Participant.objects.values_list("status", flat=True))["screened_out"] == clickers["screened_out"]
    # A screened-out session stopped at the screening block: it answered all of it and nothing after it.
    screened = Response.objects.filter(participant__status="screened_out")
    assert screened.filter(trial__kind=Trial.Kind.SCREENING).count() == 3 * clickers["screened_out"]
    assert not screened.exclude(trial__kind__in=(Trial.Kind.PRACTICE, Trial.Kind.SCREENING)).exists()
    assert Response.objects.count() == clickers["responses"]

    # Second wave: bots that know each photo's category (the test policy looks it up) pass and finish.
    knowing = bots_run(base_url=server, slug=survey.slug, participants=8, concurrency=4, policy="target", seed=3,
                       cases=flow)

    assert (knowing["errors"], knowing["lost"], knowing["duplicates"]) == (0, 0, 0), knowing
    assert (knowing["completed"], knowing["screened_out"]) == (8, 0), knowing
    assert knowing["responses"] == 8 * sum(PER_SESSION.values())
    assert knowing["double_posts_refused"] == 2 * sum(PER_SESSION.values())  # two of the eight post twice
    assert Response.objects.count() == clickers["responses"] + knowing["responses"]
    completed = Response.objects.filter(participant__status="completed", participant__is_bot=True)
    assert completed.filter(trial__kind=Trial.Kind.SCREENING).count() == 3 * (8 + clickers["completed"])
    # Timed like a 60 Hz browser: 12 frames of 200 ms, so no answer is flagged mistimed at completion.
    assert set(completed.values_list("timing__frames", flat=True)) == {12}
    assert not completed.filter(mistimed=True).exists()
    assert set(Participant.objects.values_list("is_bot", "is_pilot")) == {(True, True)}

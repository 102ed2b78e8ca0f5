"""python manage.py run_bots SLUG --participants N --concurrency C --policy perceptual|random|target|adversarial
[--live | --as-people] ; python manage.py run_bots SLUG --erase-rehearsal"""
import json

import requests
from django.core.management.base import BaseCommand, CommandError

from backend.exceptions import ApplicationError
from surveys.bots import CASES, POLICIES, bots_run
from surveys.models import Survey
from surveys.services import survey_rehearsal_check, survey_rehearsal_erase, survey_rehearsal_start
from teams.actors import Actor


class Command(BaseCommand):
    help = "Participant bots over real HTTP against a running server; prints one JSON line (lost/duplicates from the database)."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--participants", type=int, default=10)
        parser.add_argument("--concurrency", type=int, default=4)
        parser.add_argument("--policy", choices=POLICIES, default="perceptual",
                            help="How bots answer (surveys/bots.py); a classification survey is walked practice, "
                                 "screening, main trials, and screened-out bots are counted as screened_out.")
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")
        parser.add_argument("--live", action="store_true", help="Fill live slots (default: pilot mode, never mixed with live data).")
        parser.add_argument("--as-people", action="store_true",
                            help="A rehearsal: live bots that adaptive collection's estimates count like people. "
                                 "Refused once real participants have come; audit-logged; undone by --erase-rehearsal.")
        parser.add_argument("--erase-rehearsal", action="store_true",
                            help="Run no bots: erase the survey's rehearsal sessions with their answers, free their "
                                 "places and start adaptive collection afresh (audit-logged); prints what was erased.")
        parser.add_argument("--attentive-only", action="store_true", help="No dropouts, reloads, double posts, offline bursts.")
        parser.add_argument("--think-ms", type=float, default=0.0)
        parser.add_argument("--seed", type=int, default=None)

    def handle(self, *args, slug, participants, concurrency, policy, base_url, live, as_people, erase_rehearsal,
               attentive_only, think_ms, seed, **options):
        survey = Survey.objects.filter(slug=slug).first()
        if survey is None:
            raise CommandError(f"There is no survey '{slug}'.")
        if erase_rehearsal:
            if as_people:
                raise CommandError("--erase-rehearsal runs no bots; leave out --as-people.")
            self.stdout.write(json.dumps(survey_rehearsal_erase(survey=survey, actor=Actor.command("run_bots"))))
            return
        if participants < 1 or concurrency < 1:
            raise CommandError("--participants and --concurrency must be at least 1.")
        if as_people:  # before the server check: a refusal needs no server
            try:
                survey_rehearsal_check(survey=survey)
            except ApplicationError as exc:
                raise CommandError(exc.message) from exc
        if live and survey.status != Survey.Status.LIVE:
            raise CommandError(f"Survey '{slug}' is not live; publish it or leave out --live (pilot mode).")
        try:
            requests.get(base_url.rstrip("/") + f"/s/{slug}/", timeout=10)
        except requests.RequestException as exc:
            raise CommandError(f"No server answers at {base_url} ({exc.__class__.__name__}); start it or pass --base-url.") from exc
        if as_people:
            params = {"participants": participants, "concurrency": concurrency, "policy": policy, "base_url": base_url,
                      "attentive_only": attentive_only, "seed": seed}
            try:
                survey_rehearsal_start(survey=survey, params=params, actor=Actor.command("run_bots"))
            except ApplicationError as exc:  # someone came in meanwhile
                raise CommandError(exc.message) from exc
        summary = bots_run(
            base_url=base_url, slug=slug, participants=participants, concurrency=concurrency, policy=policy,
            live=live or as_people, cases=("attentive",) if attentive_only else CASES, think_s=think_ms / 1000,
            seed=seed, as_people=as_people,
        )
        self.stdout.write(json.dumps(summary))

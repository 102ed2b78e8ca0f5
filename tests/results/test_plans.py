"""The analysis plan frozen before the data (results.plans, issue 21 part D): its canonical JSON and hash, silent
re-freezes before the first real answer, deviations with a reason after it, the report's plan block, the
pre-registration export, and the admin form and API that edit a plan."""
import hashlib
import json

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from backend.exceptions import ApplicationError
from results.models import AnalysisPlanVersion
from results.plan_document import plan_canonical, plan_document
from results.plan_export import plan_files
from results.plans import PLAN_EDITABLE_FIELDS, plan_change, plan_freeze, plan_report
from results.services import alignment_report
from surveys.models import Survey
from surveys.services import survey_create, survey_publish
from teams.actors import Actor
from teams.models import AuditEntry
from tests.results.helpers import session_answer, target

pytestmark = pytest.mark.django_db


def real_answer(survey, pid="P-1"):
    return session_answer(survey, pid=pid, choose=target, limit=1, complete=False)


def versions(survey):
    return list(AnalysisPlanVersion.objects.filter(survey=survey).order_by("version"))


# --------------------------------------------------------------------------------------------- freezing


def test_publish_freezes_the_plan_as_canonical_json_with_its_sha256(iri_set, researcher):
    draft = survey_create(slug="to-freeze", title="Which is closer?", iri_jobs=[iri_set], rng_seed=1)
    live_survey = survey_publish(survey=draft, actor=Actor.of_user(researcher))
    [v1] = versions(live_survey)

    assert v1.version == 1 and not v1.deviation and v1.reason == ""
    assert v1.sha256 == hashlib.sha256(v1.canonical.encode()).hexdigest()
    resorted = json.dumps(json.loads(v1.canonical), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert v1.canonical == resorted
    assert json.loads(v1.canonical) == plan_document(survey=live_survey)
    [entry] = AuditEntry.objects.filter(action="survey.plan_freeze", object_id=str(live_survey.pk))
    assert entry.user == researcher and entry.details == {"version": 1, "sha256": v1.sha256}


def test_the_plan_covers_conditions_design_stopping_exclusions_and_the_primary_statistic(live_survey, iri_set):
    plan = plan_document(survey=live_survey)

    assert [s["id"] for c in plan["conditions"] for s in c["iri_sets"]] == [iri_set.pk]
    assert plan["conditions"][0]["iri_sets"][0]["main_trials"] == live_survey.trials.filter(kind="main").count()
    assert plan["design"]["task_type"] == "2afc" and plan["design"]["trial_lists"] == live_survey.trial_lists.count()
    assert plan["stopping"] == {**plan["stopping"], "rule": "fixed_n", "ratings_per_list": live_survey.ratings_per_list}
    assert plan["exclusions"]["catch_min_accuracy"] == live_survey.catch_min_accuracy
    assert plan["primary"]["statistic"] == "alignment"
    assert plan["primary"]["interval"] == {"method": "percentile_bootstrap_two_way", "level": 0.95, "n_boot": 1000,
                                           "seed": 0, "resample": ["participants", "target_photos"]}


def test_canonical_json_does_not_depend_on_key_order_or_number_spelling():
    a = {"b": {"y": 0.8, "x": [1, "é"]}, "a": None}
    b = {"a": None, "b": {"x": [1, "é"], "y": 4 / 5}}

    assert plan_canonical(document=a) == plan_canonical(document=b) == '{"a":null,"b":{"x":[1,"é"],"y":0.8}}'
    with pytest.raises(ValueError):
        plan_canonical(document={"a": float("nan")})


def test_a_drafts_exported_hash_is_the_one_publish_freezes(iri_set):
    draft = survey_create(slug="draft", title="t", iri_jobs=[iri_set])
    exported = plan_report(survey=draft)

    survey_publish(survey=draft)

    assert not exported["frozen"] and exported["note"]
    assert plan_report(survey=draft)["sha256"] == exported["sha256"]


def test_publishing_again_with_the_plan_unchanged_adds_no_version(live_survey):
    survey_publish(survey=live_survey)
    plan_freeze(survey=live_survey)

    assert len(versions(live_survey)) == 1


# --------------------------------------------------------------------------------------------- before the data


def test_before_the_first_real_answer_an_edit_refreezes_silently(live_survey):
    session_answer(live_survey, pid="bot", choose=target, limit=1, complete=False, is_bot=True)
    first = versions(live_survey)[0].sha256

    version = plan_change(survey=live_survey, values={"catch_min_accuracy": 0.9})

    live_survey.refresh_from_db()
    assert live_survey.catch_min_accuracy == 0.9
    assert version.version == 2 and not version.deviation and version.sha256 != first
    plan = plan_report(survey=live_survey)
    assert plan["sha256"] == plan["frozen_sha256"] == version.sha256 and plan["deviations"] == []


def test_an_edit_that_leaves_the_plan_as_it_was_adds_no_version(live_survey):
    real_answer(live_survey)

    assert plan_change(survey=live_survey, values={"title": "A new title"}) is None

    live_survey.refresh_from_db()
    assert live_survey.title == "A new title" and len(versions(live_survey)) == 1


# --------------------------------------------------------------------------------------------- after the data


def test_after_the_first_real_answer_a_change_without_a_reason_is_refused_and_nothing_is_saved(live_survey):
    real_answer(live_survey)

    for reason in ("", "   "):
        with pytest.raises(ApplicationError) as refused:
            plan_change(survey=live_survey, values={"rt_floor_ms": 150.0}, reason=reason)
        assert refused.value.extra["field"] == "reason"
        assert "reason" in refused.value.message and "exclusions.rt_floor_ms" in refused.value.message

    live_survey.refresh_from_db()
    assert live_survey.rt_floor_ms == 200.0 and len(versions(live_survey)) == 1
    assert not AuditEntry.objects.filter(action="survey.plan_change").exists()


def test_a_change_with_a_reason_is_a_deviation_audit_logged_and_listed_by_the_report(live_survey, researcher):
    real_answer(live_survey)
    frozen = versions(live_survey)[0].sha256

    version = plan_change(survey=live_survey, values={"rt_floor_ms": 150.0}, reason="The floor cut fast readers.",
                          actor=Actor.of_user(researcher))

    assert version.deviation and version.version == 2
    assert version.changed == [{"path": "exclusions.rt_floor_ms", "before": 200.0, "after": 150.0}]
    entry = AuditEntry.objects.get(action="survey.plan_change")
    assert entry.user == researcher and entry.details["reason"] == "The floor cut fast readers."
    plan = alignment_report(survey=live_survey, n_boot=20)["plan"]
    assert plan["sha256"] == version.sha256 and plan["frozen_sha256"] == frozen and plan["frozen_version"] == 1
    [deviation] = plan["deviations"]
    assert deviation["version"] == 2 and deviation["by"] == "alice" and deviation["at"]
    assert deviation["reason"] == "The floor cut fast readers." and deviation["changed"] == version.changed


def test_pilot_bot_and_rehearsal_answers_are_not_data(live_survey):
    import uuid

    from surveys.services import participant_consent, participant_enroll, response_record
    from tests.conftest import new_key

    not_data = [("PILOT", {"pilot": True}), ("BOT", {"is_bot": True}),
                ("REHEARSAL", {"is_bot": True, "is_rehearsal": True})]
    for pid, flags in not_data:
        participant, _ = participant_enroll(survey=live_survey, prolific_pid=pid, **flags)
        participant_consent(participant=participant)
        trial = participant.assignments.order_by("position").first().trial
        response_record(token=participant.token, trial_public_id=trial.public_id, choice=0, rt_ms=700.0,
                        idempotency_key=uuid.UUID(new_key()))

    assert plan_change(survey=live_survey, values={"one_side_max_fraction": 0.9}).deviation is False


def test_a_change_made_around_the_services_shows_in_the_report(live_survey):
    real_answer(live_survey)
    Survey.objects.filter(pk=live_survey.pk).update(catch_min_accuracy=0.5)
    live_survey.refresh_from_db()

    plan = plan_report(survey=live_survey)

    assert [c["path"] for c in plan["unrecorded_changes"]] == ["exclusions.catch_min_accuracy"]
    assert "without going through" in plan["note"]


def test_publishing_a_changed_plan_after_the_data_is_refused(live_survey):
    real_answer(live_survey)
    Survey.objects.filter(pk=live_survey.pk).update(precision_every=3, rt_floor_ms=10)
    live_survey.refresh_from_db()

    with pytest.raises(ApplicationError) as refused:
        survey_publish(survey=live_survey)

    assert refused.value.extra["field"] == "reason" and len(versions(live_survey)) == 1


def test_publish_and_the_freeze_are_one_transaction(iri_set, monkeypatch):
    """surveys sends survey_published inside the publish; results freezes the plan there (results.apps)."""
    from results import plans

    draft = survey_create(slug="atomic", title="t", iri_jobs=[iri_set])
    freeze = plans.plan_freeze

    def freeze_then_fail(**kwargs):
        freeze(**kwargs)  # version 1 written, then something goes wrong in the same publish
        raise ApplicationError("the disk is full")

    monkeypatch.setattr(plans, "plan_freeze", freeze_then_fail)
    with pytest.raises(ApplicationError):
        survey_publish(survey=draft)
    draft.refresh_from_db()
    assert draft.status == Survey.Status.DRAFT and versions(draft) == []  # neither the publish nor the version

    monkeypatch.undo()
    published = survey_publish(survey=draft)
    assert published.status == Survey.Status.LIVE and [v.version for v in versions(draft)] == [1]


def test_a_survey_live_before_plans_were_frozen_gets_its_old_plan_as_version_1(iri_set):
    survey = survey_create(slug="old", title="t", iri_jobs=[iri_set])
    Survey.objects.filter(pk=survey.pk).update(status=Survey.Status.LIVE)  # as before this feature
    survey.refresh_from_db()
    real_answer(survey)

    version = plan_change(survey=survey, values={"catch_min_accuracy": 0.6}, reason="stricter was too strict")

    v1, v2 = versions(survey)
    assert v1.reason and not v1.deviation and json.loads(v1.canonical)["exclusions"]["catch_min_accuracy"] == 0.75
    assert version == v2 and v2.deviation
    assert "after the first real answer" in plan_report(survey=survey)["note"]


# --------------------------------------------------------------------------------------------- the export


def test_survey_plan_export_writes_markdown_and_json_whose_sha256_is_the_frozen_hash(live_survey, tmp_path, capsys):
    real_answer(live_survey)
    plan_change(survey=live_survey, values={"rt_floor_ms": 150.0}, reason="fast | readers")

    call_command("survey_plan_export", live_survey.slug, "--out", str(tmp_path / "osf"))

    plan = plan_report(survey=live_survey)
    written = (tmp_path / "osf" / f"{live_survey.slug}-analysis-plan.json").read_bytes()
    assert hashlib.sha256(written).hexdigest() == plan["frozen_sha256"] != plan["sha256"]
    markdown = (tmp_path / "osf" / f"{live_survey.slug}-analysis-plan.md").read_text()
    for heading in ("## 1. Conditions", "## 3. Sample size and stopping rule", "## 4. Exclusion rules",
                    "## 5. Primary statistic and its interval", "## 6. Deviations from the frozen plan"):
        assert heading in markdown
    assert plan["frozen_sha256"] in markdown and plan["sha256"] in markdown
    assert "exclusions.rt_floor_ms: 200.0 → 150.0" in markdown and "fast \\| readers" in markdown
    history = json.loads((tmp_path / "osf" / f"{live_survey.slug}-analysis-plan-versions.json").read_text())
    assert [v["version"] for v in history["versions"]] == [1, 2]
    assert history["deviations"][0]["reason"] == "fast | readers"
    assert plan["frozen_sha256"] in capsys.readouterr().out


def test_survey_plan_export_refuses_an_unknown_slug_or_another_teams_survey(live_survey, tmp_path):
    from teams.services import team_create

    team_create(name="Lab B")
    with pytest.raises(CommandError, match="no survey"):
        call_command("survey_plan_export", "nope", "--out", str(tmp_path))
    with pytest.raises(CommandError, match="no survey"):
        call_command("survey_plan_export", live_survey.slug, "--team", "Lab B", "--out", str(tmp_path))
    assert not list(tmp_path.iterdir())


def test_the_files_of_a_draft_say_it_is_not_frozen(iri_set):
    draft = survey_create(slug="draft", title="t", iri_jobs=[iri_set])

    files = plan_files(survey=draft)

    assert "a draft" in files["draft-analysis-plan.md"] and "None." in files["draft-analysis-plan.md"]


def test_every_field_the_plan_lets_edit_is_one_the_plan_reads(live_survey):
    for field in PLAN_EDITABLE_FIELDS:
        assert hasattr(Survey, field), field


# --------------------------------------------------------------------------------------------- the admin


def change_form(client, survey) -> dict:
    """The survey's change form as the admin renders it, as {name: value} a browser would send back."""
    from tests.teams.test_admin_crawl import rendered_form

    form = rendered_form(client.get(f"/admin/surveys/survey/{survey.pk}/change/"))
    return {k: v if len(v) > 1 else v[0] for k, v in form.items()}


def test_the_admin_form_asks_for_a_reason_after_the_data_and_saves_nothing_without_it(live_survey, researcher):
    real_answer(live_survey)
    client = Client()
    client.force_login(researcher)
    data = {**change_form(client, live_survey), "catch_min_accuracy": "0.6", "title": "Renamed"}

    refused = client.post(f"/admin/surveys/survey/{live_survey.pk}/change/", data)

    assert refused.status_code == 200 and "exclusions.catch_min_accuracy" in refused.content.decode()
    live_survey.refresh_from_db()
    assert live_survey.catch_min_accuracy == 0.75 and live_survey.title != "Renamed" and len(versions(live_survey)) == 1

    saved = client.post(f"/admin/surveys/survey/{live_survey.pk}/change/",
                        {**data, "plan_change_reason": "Attention checks were too hard."})

    assert saved.status_code == 302
    live_survey.refresh_from_db()
    assert live_survey.catch_min_accuracy == 0.6 and live_survey.title == "Renamed"
    v2 = versions(live_survey)[-1]
    assert v2.deviation and v2.reason == "Attention checks were too hard." and v2.created_by == researcher
    page = client.get(f"/admin/results/surveyreport/{live_survey.pk}/report/").content.decode()
    assert 'id="plan-deviations"' in page and "Attention checks were too hard." in page and v2.sha256 in page


def test_the_admin_form_saves_a_change_outside_the_plan_without_a_reason(live_survey, researcher):
    real_answer(live_survey)
    client = Client()
    client.force_login(researcher)

    saved = client.post(f"/admin/surveys/survey/{live_survey.pk}/change/", {**change_form(client, live_survey),
                                                                            "title": "Renamed"})

    assert saved.status_code == 302 and len(versions(live_survey)) == 1
    live_survey.refresh_from_db()
    assert live_survey.title == "Renamed"


def test_the_report_page_offers_the_plan_for_a_preregistration(live_survey, researcher):
    client = Client()
    client.force_login(researcher)
    sha = versions(live_survey)[0].sha256

    as_json = client.get(f"/admin/results/surveyreport/{live_survey.pk}/report/analysis-plan.json")
    as_md = client.get(f"/admin/results/surveyreport/{live_survey.pk}/report/analysis-plan.md")

    assert hashlib.sha256(as_json.content).hexdigest() == sha
    assert as_md.status_code == 200 and sha in as_md.content.decode()
    assert AuditEntry.objects.filter(action="survey.export", details__export="analysis-plan.md").exists()


# --------------------------------------------------------------------------------------------- the API


def test_the_api_shows_the_plan_and_refuses_a_change_without_a_reason_after_the_data(live_survey, researcher_client):
    real_answer(live_survey)
    url = f"/api/results/surveys/{live_survey.slug}/analysis-plan"
    shown = researcher_client.get(url).json()

    refused = researcher_client.post(url, {"rt_floor_ms": 100}, format="json")
    bad = researcher_client.post(url, {"one_side_max_fraction": 0.3, "reason": "x"}, format="json")
    empty = researcher_client.post(url, {"reason": "nothing"}, format="json")

    assert shown["plan"]["sha256"] == versions(live_survey)[0].sha256 and "## 6. Deviations" in shown["markdown"]
    assert refused.status_code == 400 and refused.json()["extra"]["field"] == "reason"
    assert "reason" in refused.json()["message"]
    assert bad.status_code == 400 and bad.json()["extra"]["field"] == "one_side_max_fraction"
    assert empty.status_code == 400
    live_survey.refresh_from_db()
    assert live_survey.rt_floor_ms == 200.0 and len(versions(live_survey)) == 1

    changed = researcher_client.post(url, {"rt_floor_ms": 100, "reason": "Readers are fast."}, format="json")

    assert changed.status_code == 200
    body = changed.json()
    assert body["plan"]["deviations"][0]["reason"] == "Readers are fast."
    assert body["document"]["exclusions"]["rt_floor_ms"] == 100
    report = researcher_client.get(f"/api/results/surveys/{live_survey.slug}/alignment?n_boot=10").json()
    assert report["plan"] == body["plan"]


def test_an_adaptive_plan_holds_its_goal_cap_and_cadence_and_guards_them_after_the_data(iri_set):
    survey = survey_publish(survey=survey_create(slug="adaptive", title="t", iri_jobs=[iri_set], precision_goal=0.25))
    stopping = plan_document(survey=survey)["stopping"]
    assert stopping == {"rule": "adaptive_precision", "goal_half_width": 0.25, "re_estimate_every": 1,
                        "min_answers": 20, "max_participants": survey.max_participants,
                        "interval": "design_effect_wilson", "ratings_per_list": None}
    real_answer(survey)

    with pytest.raises(ApplicationError, match="stopping.re_estimate_every"):
        plan_change(survey=survey, values={"precision_every": 5})

    markdown = plan_files(survey=survey)["adaptive-analysis-plan.md"]
    assert "half-width of at most 0.25" in markdown and "every 1 completed session" in markdown


def test_conditions_csv_names_the_plan_each_row_was_computed_under(live_survey, researcher):
    import csv
    import io

    real_answer(live_survey)
    plan_change(survey=live_survey, values={"rt_floor_ms": 150.0}, reason="Readers are fast.")
    client = Client()
    client.force_login(researcher)

    body = client.get(f"/admin/results/surveyreport/{live_survey.pk}/report/export/conditions.csv").content.decode()

    [row] = list(csv.DictReader(io.StringIO(body)))
    plan = plan_report(survey=live_survey)
    assert (row["plan_sha256"], row["plan_frozen_sha256"]) == (plan["sha256"], plan["frozen_sha256"])
    assert row["plan_deviations"] == "1"


def test_the_report_table_gives_the_plans_hash_and_each_deviation(live_survey, capsys):
    real_answer(live_survey)
    version = plan_change(survey=live_survey, values={"rt_floor_ms": 150.0}, reason="Readers are fast.")

    call_command("alignment_report", live_survey.slug, "--n-boot", "10")

    table = capsys.readouterr().out
    assert f"analysis plan: sha256 {version.sha256} (version 2, frozen {versions(live_survey)[0].sha256})" in table
    assert "deviation v2" in table and "exclusions.rt_floor_ms 200.0 → 150.0; reason: Readers are fast." in table

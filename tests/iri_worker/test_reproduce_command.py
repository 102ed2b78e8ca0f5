"""`manage.py reproduce` trains both models on Fashion-MNIST, makes IRIs and prints one JSON line; with
--survey it stores the four IRI sets and publishes a 2AFC survey on them."""
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from backend.exceptions import ApplicationError
from iri_worker.models import IriJob, TargetPhoto
from iri_worker.reproduction import FASHION_MNIST_DIR
from results.services import alignment_report
from surveys.models import Survey
from surveys.services import survey_create
from teams.models import AuditEntry
from teams.services import team_create

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not Path(FASHION_MNIST_DIR).exists(), reason="needs Debian's dataset-fashion-mnist (scripts/services.sh installs it)")
def test_reproduce_prints_the_alignment_of_each_model_and_loss_as_one_json_line(tmp_path):
    tiny = ["--train-images", "256", "--epochs", "1", "--attack-steps", "1", "--targets", "4", "--iri-steps", "5",
            "--eval-images", "40", "--threads", "1"]
    run = subprocess.run([sys.executable, "manage.py", "reproduce", "--quick", "--cache", str(tmp_path), *tiny],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)

    assert run.returncode == 0, run.stderr[-3000:]
    (line,) = run.stdout.strip().splitlines()
    report = json.loads(line)
    assert set(report["models"]) == {"standard", "robust"}
    for model in report["models"].values():
        assert 0 <= model["robust_accuracy"] <= 1 and 0 <= model["clean_accuracy"] <= 1
    assert {"standard/reg_free", "robust/reg_free", "standard/adversarial", "robust/adversarial"} <= set(report["alignment"])
    for cell in report["alignment"].values():
        assert 0 <= cell["ssim"] <= 1 and 0 <= cell["ms_ssim"] <= 1
    assert report["attack"]["norm"] == "L2" and report["attack"]["eps"] > 0
    assert len(list(tmp_path.glob("fmnist-resnet-*.pt"))) == 2  # both models cached

    again = subprocess.run([sys.executable, "manage.py", "reproduce", "--quick", "--cache", str(tmp_path), *tiny],
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert json.loads(again.stdout)["models"]["robust"]["cached"] is True


def test_reproduce_says_where_to_get_the_data_when_it_is_missing(tmp_path):
    run = subprocess.run([sys.executable, "manage.py", "reproduce", "--quick", "--data-dir", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)

    assert run.returncode != 0
    assert "dataset-fashion-mnist" in run.stderr


TINY_SURVEY_RUN = ["--quick", "--train-images", "256", "--epochs", "1", "--attack-steps", "1", "--targets", "4",
                   "--iri-steps", "5", "--eval-images", "40", "--threads", "1"]


@pytest.fixture(scope="module")
def weights_cache(tmp_path_factory):
    """One cache for the in-process runs: the models are trained once, then loaded."""
    return tmp_path_factory.mktemp("reproduce-weights")


@pytest.fixture(autouse=True)
def torch_threads_kept():
    """--threads sets torch's thread count for the whole process: give the other tests theirs back."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.skipif(not Path(FASHION_MNIST_DIR).exists(), reason="needs Debian's dataset-fashion-mnist (scripts/services.sh installs it)")
@pytest.mark.django_db
def test_reproduce_with_a_survey_stores_four_iri_sets_and_publishes_a_survey_that_compares_them(weights_cache, team,
                                                                                                 settings):
    team_create(name="Lab B")  # two teams: the command must be told which one
    settings.AUDIT_ACTOR_REQUIRED = True  # as outside the tests: the command must say who writes
    out = io.StringIO()
    call_command("reproduce", *TINY_SURVEY_RUN, "--cache", str(weights_cache), "--survey", "fmnist-robust-vs-standard",
                 "--team", "Lab A", stdout=out, stderr=io.StringIO())

    report = json.loads(out.getvalue())
    assert report["survey"]["url"] == "http://127.0.0.1:8000/s/fmnist-robust-vs-standard/"
    jobs = IriJob.objects.filter(pk__in=report["survey"]["iri_sets"].values())
    assert jobs.count() == 4
    for job in jobs:
        assert job.status == IriJob.Status.DONE
        assert job.images.count() == 4 and job.targets.count() == 4
        assert all(iri.proxy["ssim"]["to_target"] >= 0 for iri in job.images.all())
    assert TargetPhoto.objects.filter(label="Trouser").exists()  # the targets carry their Fashion-MNIST class

    survey = Survey.objects.get(slug="fmnist-robust-vs-standard")
    assert survey.status == Survey.Status.LIVE and survey.foil_rule == "seed" and survey.team == team
    assert {job.team for job in jobs} == {team}
    conditions = alignment_report(survey=survey)["conditions"]
    assert len(conditions) == 4
    assert {(c["training"], c["recipe"]) for c in conditions} == {
        ("standard", "reg_free"), ("standard", "adv_ssim"), ("adversarial", "reg_free"), ("adversarial", "adv_ssim")}
    assert len({c["checkpoint"] for c in conditions}) == 2  # the two models' weights, by hash
    by_command = AuditEntry.objects.filter(username="command:reproduce", user=None, team=team)
    [entry] = by_command.filter(action="survey.create")
    assert entry.object_id == str(survey.pk)
    assert by_command.filter(action="survey.publish").count() == 1 and by_command.filter(action="iri_job.create").count() == 4


@pytest.mark.django_db
@pytest.mark.parametrize("slug, reason", [("taken", "exists already"), ("not a slug!", "only letters, digits")])
def test_reproduce_refuses_a_survey_slug_before_training_and_creates_nothing(tmp_path, iri_set, slug, reason):
    survey_create(slug="taken", title="An earlier study", iri_jobs=[iri_set])
    jobs_before, surveys_before = IriJob.objects.count(), Survey.objects.count()

    with pytest.raises(CommandError, match=reason):
        call_command("reproduce", *TINY_SURVEY_RUN, "--cache", str(tmp_path), "--survey", slug,
                     stdout=io.StringIO(), stderr=io.StringIO())

    assert (IriJob.objects.count(), Survey.objects.count()) == (jobs_before, surveys_before)
    assert not list(tmp_path.iterdir())  # refused before any model was trained


@pytest.mark.django_db
def test_reproduce_with_a_survey_asks_which_team_when_there_are_several(tmp_path, team):
    team_create(name="Lab B")

    with pytest.raises(CommandError, match="several teams; choose one with --team"):
        call_command("reproduce", *TINY_SURVEY_RUN, "--cache", str(tmp_path), "--survey", "s",
                     stdout=io.StringIO(), stderr=io.StringIO())
    with pytest.raises(CommandError, match="No team 'Lab C'"):
        call_command("reproduce", *TINY_SURVEY_RUN, "--cache", str(tmp_path), "--survey", "s", "--team", "Lab C",
                     stdout=io.StringIO(), stderr=io.StringIO())

    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(not Path(FASHION_MNIST_DIR).exists(), reason="needs Debian's dataset-fashion-mnist (scripts/services.sh installs it)")
@pytest.mark.django_db
def test_a_survey_that_cannot_be_built_leaves_no_iri_set_behind(weights_cache, team, monkeypatch):
    import surveys.services

    def refuse(**kwargs):
        raise ApplicationError("The survey builder refused.")

    monkeypatch.setattr(surveys.services, "survey_publish", refuse)

    with pytest.raises(CommandError, match="The survey builder refused."):
        call_command("reproduce", *TINY_SURVEY_RUN, "--cache", str(weights_cache), "--survey", "half-made",
                     stdout=io.StringIO(), stderr=io.StringIO())

    assert not IriJob.objects.exists() and not Survey.objects.exists() and not TargetPhoto.objects.exists()

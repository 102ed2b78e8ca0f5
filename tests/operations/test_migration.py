"""The survey task runs of results became operation runs (results migrations 0005 and 0006): every row keeps its
kind, state, progress, result, error, author and times, with the survey as its subject and the survey's team."""
import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("results", "0004_survey_task_run_archive")]
AFTER = [("results", "0006_survey_task_run_delete")]


@pytest.fixture
def migrated_back(transactional_db):
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    yield executor.loader.project_state(BEFORE).apps
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())  # the schema as the other tests expect it


def test_survey_task_runs_move_into_operation_runs_with_their_survey_as_subject(migrated_back, live_survey, researcher):
    survey_task_run = migrated_back.get_model("results", "SurveyTaskRun")
    done = survey_task_run.objects.create(survey_id=live_survey.pk, kind="archive", status="DONE", progress=1.0,
                                          result={"file": "archives/1/a.zip"}, created_by_id=researcher.pk)
    failed = survey_task_run.objects.create(survey_id=live_survey.pk, kind="bots", status="FAILED", progress=0.3,
                                            error="SITE_URL is not reachable", params={"participants": 10})
    asked_at = survey_task_run.objects.filter(pk=done.pk).values_list("created_at", flat=True).get()

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)

    from operations.models import OperationRun

    archive, bots = OperationRun.objects.order_by("id")
    assert (archive.kind, archive.status, archive.progress, archive.result) == ("archive", "DONE", 1.0, done.result)
    assert archive.subject == live_survey and archive.team == live_survey.team and archive.created_by == researcher
    assert archive.created_at == asked_at
    assert (bots.kind, bots.status, bots.error, bots.params) == ("bots", "FAILED", failed.error, {"participants": 10})
    assert "results_surveytaskrun" not in connection.introspection.table_names()

"""The survey task runs become operation runs (issue 22, part A): same kind, state, progress, result and error;
the survey is the subject and its team the run's team. Backwards, the survey runs come back."""
from django.db import migrations

FIELDS = ["kind", "params", "status", "progress", "result", "error", "created_by_id", "created_at", "finished_at"]


def _survey_type(apps):
    content_type = apps.get_model("contenttypes", "ContentType")
    return content_type.objects.get_or_create(app_label="surveys", model="survey")[0]


def forwards(apps, schema_editor):
    survey_task_run = apps.get_model("results", "SurveyTaskRun")
    operation_run = apps.get_model("operations", "OperationRun")
    survey_type = _survey_type(apps)
    old = list(survey_task_run.objects.select_related("survey").order_by("id"))
    created = operation_run.objects.bulk_create([
        operation_run(team_id=run.survey.team_id, subject_type=survey_type, subject_id=run.survey_id,
                      **{name: getattr(run, name) for name in FIELDS})
        for run in old
    ])
    # created_at is auto_now_add, which bulk_create stamps with now: the old times are put back
    for run, new in zip(old, created):
        operation_run.objects.filter(pk=new.pk).update(created_at=run.created_at)


def backwards(apps, schema_editor):
    survey_task_run = apps.get_model("results", "SurveyTaskRun")
    operation_run = apps.get_model("operations", "OperationRun")
    survey_type = _survey_type(apps)
    for run in operation_run.objects.filter(subject_type=survey_type, kind__in=["proxy", "bots", "archive"]):
        survey_task_run.objects.create(survey_id=run.subject_id, **{name: getattr(run, name) for name in FIELDS})
        run.delete()


class Migration(migrations.Migration):

    dependencies = [
        ("results", "0004_survey_task_run_archive"),
        ("operations", "0001_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]

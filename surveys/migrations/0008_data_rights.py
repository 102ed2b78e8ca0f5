# Data rights: a retention period per survey, a salt for pseudonymised exports, a data version for report caches.

import secrets

from django.db import migrations, models

import surveys.models


def salts_generate(apps, schema_editor):
    """AddField would give every existing survey the same salt; each gets its own."""
    Survey = apps.get_model("surveys", "Survey")
    for survey in Survey.objects.only("pk"):
        Survey.objects.filter(pk=survey.pk).update(pseudonym_salt=secrets.token_hex(16))


class Migration(migrations.Migration):

    dependencies = [
        ("surveys", "0007_team_required"),
    ]

    operations = [
        migrations.AddField(
            model_name="survey",
            name="retention_days",
            field=models.PositiveIntegerField(
                blank=True, help_text="Days after a session ends until its Prolific / MTurk IDs are deleted. Empty: kept.", null=True
            ),
        ),
        migrations.AddField(
            model_name="survey",
            name="pseudonym_salt",
            field=models.CharField(default="", editable=False, max_length=64),
            preserve_default=False,
        ),
        migrations.RunPython(salts_generate, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="survey",
            name="pseudonym_salt",
            field=models.CharField(default=surveys.models._pseudonym_salt, editable=False, max_length=64),
        ),
        migrations.AddField(
            model_name="survey",
            name="data_version",
            field=models.PositiveIntegerField(default=0, editable=False),
        ),
    ]

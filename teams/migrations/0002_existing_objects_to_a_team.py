"""Objects made before teams existed go to one team, "Existing work", whose owners are the superusers."""
from django.conf import settings
from django.db import migrations

NAME = "Existing work"


def assign(apps, schema_editor):
    Team = apps.get_model("teams", "Team")
    Membership = apps.get_model("teams", "Membership")
    User = apps.get_model(settings.AUTH_USER_MODEL)
    owned = [apps.get_model(app, model) for app, model in
             [("iri_worker", "TargetPhoto"), ("iri_worker", "Checkpoint"), ("iri_worker", "IriJob"), ("surveys", "Survey")]]
    if not any(model.objects.filter(team__isnull=True).exists() for model in owned):
        return
    team, _ = Team.objects.get_or_create(name=NAME)
    for model in owned:
        model.objects.filter(team__isnull=True).update(team=team)
    for user in User.objects.filter(is_superuser=True):
        Membership.objects.get_or_create(team=team, user=user, defaults={"role": "owner"})


class Migration(migrations.Migration):
    dependencies = [
        ("teams", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("iri_worker", "0006_team_ownership"),
        ("surveys", "0006_survey_team"),
    ]

    operations = [migrations.RunPython(assign, migrations.RunPython.noop)]

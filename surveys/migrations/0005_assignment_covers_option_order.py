"""On PostgreSQL, the unique (participant, trial) index of assignments also carries option_order (INCLUDE), so
the answer statement reads a participant's layout without visiting the table. The model keeps declaring the plain
constraint (same name), which other databases create as before."""
from django.db import migrations

COVERED = (
    "ALTER TABLE surveys_assignment DROP CONSTRAINT assignment_once, "
    "ADD CONSTRAINT assignment_once UNIQUE (participant_id, trial_id) INCLUDE (option_order)"
)
PLAIN = (
    "ALTER TABLE surveys_assignment DROP CONSTRAINT assignment_once, "
    "ADD CONSTRAINT assignment_once UNIQUE (participant_id, trial_id)"
)


def _on_postgres(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("surveys", "0004_publishable_design")]

    operations = [migrations.RunPython(_on_postgres(COVERED), _on_postgres(PLAIN))]

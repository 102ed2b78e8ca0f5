from django.db import migrations, models

import iri_worker.models


class Migration(migrations.Migration):
    """Checkpoints get a status: the rows stored before were checked in the upload's request, so they are READY;
    a new upload is CHECKING until a worker's check passes."""

    dependencies = [
        ("iri_worker", "0008_irijob_sweep"),
    ]

    operations = [
        migrations.AddField(
            model_name="checkpoint",
            name="status",
            field=models.CharField(choices=[("CHECKING", "Being checked"), ("READY", "Ready"), ("REFUSED", "Refused")],
                                   default="READY", max_length=16),
        ),
        migrations.AlterField(
            model_name="checkpoint",
            name="status",
            field=models.CharField(choices=[("CHECKING", "Being checked"), ("READY", "Ready"), ("REFUSED", "Refused")],
                                   default="CHECKING", max_length=16),
        ),
        migrations.AddField(
            model_name="checkpoint",
            name="error",
            field=models.TextField(blank=True, help_text="Why the check refused the weights."),
        ),
        migrations.AlterField(
            model_name="checkpoint",
            name="file",
            field=models.FileField(blank=True, upload_to=iri_worker.models.checkpoint_upload_to),
        ),
    ]

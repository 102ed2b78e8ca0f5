from django.db import models


class StoredImage(models.Model):
    """A PNG in Django storage, named by its content hash so the name says nothing about its role."""

    sha256 = models.CharField(max_length=64, unique=True)
    file = models.FileField(upload_to="img/")
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.sha256[:12]


class TargetPhoto(models.Model):
    """A photo a researcher uploaded (or the demo bundled) to be the target x_t of IRIs."""

    name = models.CharField(max_length=200)
    image = models.ForeignKey(StoredImage, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name


class IriJob(models.Model):
    class Status(models.TextChoices):
        QUEUED = "QUEUED", "Queued"
        RUNNING = "RUNNING", "Running"
        DONE = "DONE", "Done"
        FAILED = "FAILED", "Failed"

    name = models.CharField(max_length=200, blank=True)
    targets = models.ManyToManyField(TargetPhoto, related_name="jobs")
    # The engine's full InversionSpec (defaults resolved), enough to reproduce every image.
    spec = models.JSONField()
    versions = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(progress__gte=0) & models.Q(progress__lte=1), name="iri_job_progress_in_unit_range"
            )
        ]

    def __str__(self) -> str:
        return self.name or f"IRI job {self.pk}"

    @property
    def backbone(self) -> str:
        return self.spec.get("backbone", "")

    @property
    def layer(self) -> str:
        return self.spec.get("layer") or ""

    @property
    def recipe(self) -> str:
        return self.spec.get("recipe", "")

    @property
    def seed_kind(self) -> str:
        return self.spec.get("seed_kind", "")


class IriImage(models.Model):
    """One identically represented input: the result of inverting `target` from `seed`."""

    job = models.ForeignKey(IriJob, on_delete=models.CASCADE, related_name="images")
    target = models.ForeignKey(TargetPhoto, on_delete=models.PROTECT, related_name="iris")
    seed = models.ForeignKey(StoredImage, on_delete=models.PROTECT, related_name="+")
    image = models.ForeignKey(StoredImage, on_delete=models.PROTECT, related_name="+")
    # The target as the engine saw it (resized and cropped): what a survey shows as the option.
    target_image = models.ForeignKey(StoredImage, on_delete=models.PROTECT, related_name="+")
    initial_loss = models.FloatField()
    final_loss = models.FloatField()
    best_step = models.PositiveIntegerField()

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["job", "target"], name="iri_image_one_per_job_target")]

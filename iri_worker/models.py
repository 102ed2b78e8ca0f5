from django.db import models

from teams.models import Team


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

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="photos")
    name = models.CharField(max_length=200)
    # The class of the photo (e.g. an ImageNet class name): the 2AFC foil rule "same class" picks among these.
    label = models.CharField(max_length=100, null=True, blank=True, help_text="Class label, e.g. 'tabby cat'.")
    image = models.ForeignKey(StoredImage, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name


def checkpoint_upload_to(instance, filename: str) -> str:
    return f"checkpoints/{instance.sha256[:2]}/{instance.sha256}.pt"


class Checkpoint(models.Model):
    """Weights a researcher uploaded for a registered architecture. A worker loads them into it with
    torch.load(weights_only=True) (an operation run, iri_worker.operation_kinds); only READY weights can be used by a
    job. REFUSED ones keep the reason, not the file."""

    class Status(models.TextChoices):
        CHECKING = "CHECKING", "Being checked"
        READY = "READY", "Ready"
        REFUSED = "REFUSED", "Refused"

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="checkpoints")
    name = models.CharField(max_length=200)
    backbone = models.CharField(max_length=100, help_text="The registered architecture these weights fit.")
    sha256 = models.CharField(max_length=64)
    file = models.FileField(upload_to=checkpoint_upload_to, blank=True)
    size = models.PositiveBigIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CHECKING)
    error = models.TextField(blank=True, help_text="Why the check refused the weights.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        # Per team: a team never learns, from a refusal or a shared row, which weights another team uploaded.
        constraints = [models.UniqueConstraint(fields=["team", "sha256"], name="checkpoint_once_per_team")]

    def __str__(self) -> str:
        return f"{self.name} ({self.backbone}, {self.sha256[:12]})"


class IriJob(models.Model):
    class Status(models.TextChoices):
        QUEUED = "QUEUED", "Queued"
        RUNNING = "RUNNING", "Running"
        DONE = "DONE", "Done"
        FAILED = "FAILED", "Failed"
        CANCELLED = "CANCELLED", "Cancelled"

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="iri_jobs")
    name = models.CharField(max_length=200, blank=True)
    targets = models.ManyToManyField(TargetPhoto, related_name="jobs")
    # The engine's full InversionSpec (defaults resolved), enough to reproduce every image.
    spec = models.JSONField()
    # Library versions and the devices that ran the chunks (filled in as chunks finish).
    versions = models.JSONField(default=dict, blank=True)
    checkpoint = models.ForeignKey(Checkpoint, null=True, blank=True, on_delete=models.PROTECT, related_name="jobs")
    # A photo as the seed x0 of every IRI (instead of spec.seed_kind noise); shared by the whole job.
    seed_photo = models.ForeignKey(TargetPhoto, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    # Targets per task (one batch on one worker). Device options (precision, channels_last) live in the spec.
    chunk_size = models.PositiveIntegerField(default=8, help_text="Targets per task (one GPU batch).")
    # A layer sweep: the jobs created together from one request, one per layer (the spec's layer), share this id.
    sweep = models.UUIDField(null=True, blank=True, db_index=True,
                             help_text="Shared by the jobs of one layer sweep (one job per layer).")
    # The adversarial regulariser's adaptive weight c: measured once, on the first chunk's targets (the job's
    # first batch) at the first step, then used by every chunk. Null: no adaptive c in the recipe, or not yet.
    adaptive_c = models.FloatField(null=True, blank=True)
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
            ),
            models.CheckConstraint(condition=models.Q(chunk_size__gte=1), name="iri_job_chunk_size_positive"),
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


class IriChunk(models.Model):
    """A slice of a job's targets run as one Celery task (one batch on one worker)."""

    class Status(models.TextChoices):
        QUEUED = "QUEUED", "Queued"
        RUNNING = "RUNNING", "Running"
        DONE = "DONE", "Done"
        FAILED = "FAILED", "Failed"
        CANCELLED = "CANCELLED", "Cancelled"
        SPLIT = "SPLIT", "Split in two (out of memory)"

    job = models.ForeignKey(IriJob, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    target_ids = models.JSONField(help_text="TargetPhoto ids, in order.")
    size = models.PositiveIntegerField(help_text="Number of targets (len(target_ids)).")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    progress = models.FloatField(default=0.0)
    error = models.TextField(blank=True)
    worker = models.CharField(max_length=255, blank=True, help_text="Celery hostname of the last worker.")
    # What the run used: device, precision, adaptive weights, seconds.
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job_id", "index"]
        constraints = [
            models.UniqueConstraint(fields=["job", "index"], name="iri_chunk_unique_index"),
            models.CheckConstraint(
                condition=models.Q(progress__gte=0) & models.Q(progress__lte=1), name="iri_chunk_progress_in_unit_range"
            ),
        ]

    def __str__(self) -> str:
        return f"chunk {self.index} of job {self.job_id}"


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
    # Perceptual proxy: {"ssim": {"to_target": d, "to_seed": d, "aligned": bool}, "ms_ssim": {...}[, "lpips": ...]},
    # d a distance (1 - similarity); aligned = d_to_target <= d_to_seed (ties count aligned).
    proxy = models.JSONField(default=dict, blank=True)
    # The loss became NaN/inf: the engine stopped this image and kept its best finite iterate.
    nan_loss = models.BooleanField(default=False)
    # Proof that it is an IRI (iri_worker.validity_record.ValidityRecord; empty for images made before it existed):
    # {"version", "distance", "percentile", "null": {...}, "label_match", "iri_label", "target_label", ..., "loss_curve"}.
    validity = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["job", "target"], name="iri_image_one_per_job_target")]


class NullDistribution(models.Model):
    """Representation distances between unrelated photos (the null an IRI's distance is judged against).

    One row per (backbone, checkpoint, layer, image size, photo pool, pairing rule), found by ``key`` (a
    SHA-256 of all of them), so every worker and every later job with the same settings reuses it."""

    key = models.CharField(max_length=64, unique=True)
    backbone = models.CharField(max_length=100)
    checkpoint_sha256 = models.CharField(max_length=64, blank=True)
    layer = models.CharField(max_length=200)
    image_size = models.PositiveIntegerField()
    pool = models.JSONField(help_text="sha256 of the pool's photos, sorted.")
    distances = models.JSONField(help_text="The null distances, ascending.")
    seconds = models.FloatField(default=0.0, help_text="What computing it took (forward passes included).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"null of {self.backbone}/{self.layer}@{self.image_size}px: {len(self.distances)} pairs of {len(self.pool)} photos"

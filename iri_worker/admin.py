import json

from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html, format_html_join

from backend.exceptions import ApplicationError
from teams.actors import Actor
from teams.admin import TeamScopedAdmin, TeamScopedInline

from . import admin_checkpoints  # noqa: F401 (registers the checkpoints' admin)
from .models import Checkpoint, IriChunk, IriImage, IriJob, TargetPhoto
from .selectors import iri_job_proxy_summary, iri_job_record, iri_job_validity_summary
from .services import (
    iri_job_cancel,
    iri_job_check,
    iri_job_create,
    iri_job_retry,
    photo_png_bytes,
    target_photo_create,
)
from .validity_record import ValidityRecord


def _thumb(stored, size: int = 96):
    return format_html('<img src="{}" width="{}" height="{}" style="image-rendering:pixelated">', stored.file.url, size, size)


class TargetPhotoForm(forms.ModelForm):
    photo = forms.FileField(help_text="PNG, JPEG, WebP, …; it is decoded and stored again as PNG.")

    class Meta:
        model = TargetPhoto
        fields = ["name", "label"]

    def clean(self):
        cleaned = super().clean()
        upload = cleaned.get("photo")
        if upload is not None:
            cleaned["data"] = upload.read()
            try:
                photo_png_bytes(data=cleaned["data"])
            except ApplicationError as exc:
                raise forms.ValidationError({"photo": exc.message}) from exc
        return cleaned


@admin.register(TargetPhoto)
class TargetPhotoAdmin(TeamScopedAdmin, admin.ModelAdmin):
    new_object_team = True
    audit_name = "photo"
    list_display = ["id", "name", "label", "team", "preview", "created_at"]
    list_editable = ["label"]
    list_filter = ["label"]
    readonly_fields = ["preview"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = TargetPhotoForm
        return super().get_form(request, obj, **kwargs)

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        data = form.cleaned_data
        photo = target_photo_create(team=data["team"], name=data["name"] or data["photo"].name, data=data["data"],
                                    label=data.get("label"), actor=Actor.of_request(request))
        obj.pk = photo.pk
        obj.refresh_from_db()

    @admin.display(description="photo")
    def preview(self, obj):
        return _thumb(obj.image)


class LayerInput(forms.TextInput):
    """A text box with a <datalist> of the backbone's layer names (engine.layer_names)."""

    def __init__(self, layers=(), **kwargs):
        super().__init__(attrs={"list": "iri-layer-names", "size": 40}, **kwargs)
        self.layers = list(layers)

    def render(self, name, value, attrs=None, renderer=None):
        box = super().render(name, value, attrs, renderer)
        options = format_html_join("", '<option value="{}">', ((n,) for n in self.layers))
        return format_html('{}<datalist id="iri-layer-names">{}</datalist>', box, options)


class IriJobForm(forms.ModelForm):
    target_photos = forms.ModelMultipleChoiceField(queryset=TargetPhoto.objects.all(), widget=forms.CheckboxSelectMultiple)
    backbone = forms.ChoiceField(choices=())
    checkpoint = forms.ModelChoiceField(queryset=Checkpoint.objects.filter(status=Checkpoint.Status.READY),
                                        required=False,
                                        help_text="Uploaded weights for the backbone whose check passed (empty = its "
                                                  "built-in weights).")
    layer = forms.CharField(required=False)
    recipe = forms.ChoiceField(choices=(), required=False)
    recipe_json = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), label="recipe as JSON",
        help_text='Overrides the recipe above, e.g. [{"term": "representation_distance", "weight": 1.0}].',
    )
    seed_kind = forms.ChoiceField(choices=())
    seed_photo = forms.ModelChoiceField(queryset=TargetPhoto.objects.all(), required=False,
                                        help_text="With seed kind 'photo': another target photo as the seed.")
    seed_upload = forms.FileField(required=False, help_text="With seed kind 'photo': or upload an image as the seed.")
    steps = forms.IntegerField()
    step_size = forms.FloatField()
    image_size = forms.IntegerField(required=False, help_text="Pixels per side; empty = the backbone's input size.")
    rng_seed = forms.IntegerField()
    chunk_size = forms.IntegerField(required=False, min_value=1,
                                    help_text="Targets per task (one batch on one worker); empty = 8 at 224 px, more for smaller images.")
    param = forms.ChoiceField(choices=(), required=False, help_text="Pixels, or the Fourier / decorrelated-colour parametrisation.")
    transforms = forms.ChoiceField(choices=(), required=False, help_text="Transformation robustness (empty = none).")
    step_rule = forms.ChoiceField(choices=(), required=False)
    step_rounds = forms.IntegerField(
        required=False, min_value=1,
        help_text="Rounds of equal length, the step size halved each new round (Feather et al.: 24000 steps, 8 rounds).",
    )
    precision = forms.ChoiceField(
        choices=(), required=False,
        help_text="fp32; bf16 autocast on the worker; or auto: bf16 where the worker measures it faster on its host "
                  "with the loss after the same steps within 1 % of fp32's.",
    )
    channels_last = forms.NullBooleanField(required=False, help_text="Memory layout; unknown = the faster one, timed by the worker.")

    FIELDS = ["name", "target_photos", "backbone", "checkpoint", "layer", "recipe", "recipe_json", "seed_kind",
              "seed_photo", "seed_upload", "param", "transforms", "step_rule", "step_rounds", "steps", "step_size",
              "image_size", "rng_seed", "chunk_size", "precision", "channels_last"]
    SPEC_KEYS = ["backbone", "layer", "recipe", "seed_kind", "param", "transforms", "step_rule", "step_rounds", "steps",
                 "step_size", "image_size", "rng_seed", "precision", "channels_last"]

    class Meta:
        model = IriJob
        fields = ["name"]

    def __init__(self, *args, **kwargs):
        from iri_worker.engine import (
            PARAMS, RECIPES, SPEC_SEED_KINDS, STEPS, TRANSFORMS, InversionSpec, layer_names, list_backbones,
            precisions_supported,
        )

        super().__init__(*args, **kwargs)
        # Every choice comes from the engine's registries, every initial value from the spec's defaults.
        choices = {
            "backbone": list_backbones(), "recipe": list(RECIPES), "seed_kind": list(SPEC_SEED_KINDS),
            "param": list(PARAMS), "step_rule": list(STEPS), "precision": list(precisions_supported()),
        }
        for name, values in choices.items():
            self.fields[name].choices = [(v, v.replace("_", " ")) for v in values]
        self.fields["transforms"].choices = [("", "none"), *((t, t) for t in TRANSFORMS)]
        defaults = InversionSpec()
        for name in ["backbone", "recipe", "seed_kind", "param", "step_rule", "steps", "step_size", "rng_seed",
                     "precision"]:
            self.fields[name].initial = getattr(defaults, name)
        backbone = self.data.get("backbone") or defaults.backbone
        try:
            layers = layer_names(backbone)  # the registry's static data: no model is built in the web process
        except ValueError:  # not a registered backbone: the backbone field says so when the form is checked
            layers = []
        self.fields["layer"].widget = LayerInput(layers)
        self.fields["layer"].help_text = (
            f"Dotted module name; empty = the backbone's penultimate layer. The list offers the "
            f"{len(layers)} layers of {backbone}; GET /api/iri/backbones/<name>/layers lists any backbone's."
        )

    def spec(self) -> dict:
        spec = {k: self.cleaned_data[k] for k in self.SPEC_KEYS if self.cleaned_data.get(k) not in (None, "")}
        if self.cleaned_data.get("recipe_parsed") is not None:
            spec["recipe"] = self.cleaned_data["recipe_parsed"]
        return spec

    def job_arguments(self) -> dict:
        """The form as iri_job_check and iri_job_create take it (a seed photo or upload only for a photo seed)."""
        data = self.cleaned_data
        photo_seed = data.get("seed_kind") == "photo"
        upload = data.get("seed_upload_data") if photo_seed else None
        return {
            "targets": list(data["target_photos"]), "spec": self.spec(), "checkpoint": data.get("checkpoint"),
            "seed_photo": data.get("seed_photo") if photo_seed and upload is None else None,
            "seed_upload": upload, "chunk_size": data.get("chunk_size"),
        }

    def clean(self):
        cleaned = super().clean()
        cleaned["recipe_parsed"] = None
        if cleaned.get("recipe_json"):
            try:
                cleaned["recipe_parsed"] = json.loads(cleaned["recipe_json"])
            except ValueError as exc:
                self.add_error("recipe_json", f"Not valid JSON: {exc}")
        upload = cleaned.get("seed_upload")
        cleaned["seed_upload_data"] = upload.read() if upload is not None else None
        if not self.errors:
            try:
                iri_job_check(**self.job_arguments())  # the API's checks; iri_job_create runs them again as it stores
            except ApplicationError as exc:
                raise forms.ValidationError(exc.message) from exc
        return cleaned


def _proxy_text(proxy: dict) -> str:
    parts = []
    for metric, value in (proxy or {}).items():
        mark = "aligned" if value.get("aligned") else "not aligned"
        parts.append(f"{metric}: d(target) {value['to_target']:.3f} / d(seed) {value['to_seed']:.3f} ({mark})")
    return "; ".join(parts) or "–"


def _sparkline(curve: list, width: int = 120, height: int = 28):
    """The loss curve as a tiny inline SVG polyline (no script, no external file)."""
    points = [(s, v) for s, v in curve if v is not None]
    if len(points) < 2:
        return ""
    steps, values = [p[0] for p in points], [p[1] for p in points]
    s0, s1, lo, hi = steps[0], steps[-1], min(values), max(values)
    span_s, span_v = (s1 - s0) or 1, (hi - lo) or 1
    xy = " ".join(f"{(s - s0) / span_s * (width - 2) + 1:.1f},{(hi - v) / span_v * (height - 2) + 1:.1f}" for s, v in points)
    return format_html(
        '<svg width="{}" height="{}" viewBox="0 0 {} {}" role="img" aria-label="loss curve">'
        '<polyline points="{}" fill="none" stroke="#417690" stroke-width="1.5"/></svg>',
        width, height, width, height, xy,
    )


def _validity_text(validity: dict):
    """Percentile in the null, label check and the loss curve (first → last) of one IRI."""
    if not validity:
        return "–"
    record = ValidityRecord.from_dict(validity)
    if record.error is not None:
        return f"no record: {record.error}"
    null = record.null
    parts = [
        f"percentile {record.percentile:.1f} % of {null.pairs if null else 0} null pairs"
        if record.percentile is not None else "no null distribution (fewer than two photos)",
        f"distance {record.distance:.4g} (null median {null.median:.4g})"
        if record.distance is not None and null and null.median is not None else "",
    ]
    if record.label_match is None:
        parts.append("no classifier")
    else:
        match = "match" if record.label_match else "MISMATCH"
        parts.append(f"label {match} ({record.iri_label_shown} / {record.target_label_shown})")
    curve = record.loss_curve
    if curve:
        first, last = curve[0], curve[-1]
        parts.append(f"loss {first[1]} (step {first[0]}) → {last[1]} (step {last[0]})")
    return format_html("{}<br>{}", "; ".join(p for p in parts if p), _sparkline(curve))


class IriImageInline(TeamScopedInline, admin.TabularInline):
    model = IriImage
    team_path = "job__team"
    extra = 0
    can_delete = False
    fields = ["target", "target_preview", "seed_preview", "iri_preview", "initial_loss", "final_loss", "best_step", "proxy_text",
              "validity_text"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="target")
    def target_preview(self, obj):
        return _thumb(obj.target_image)

    @admin.display(description="seed")
    def seed_preview(self, obj):
        return _thumb(obj.seed)

    @admin.display(description="IRI")
    def iri_preview(self, obj):
        return _thumb(obj.image)

    @admin.display(description="perceptual proxy")
    def proxy_text(self, obj):
        return _proxy_text(obj.proxy)

    @admin.display(description="validity (null percentile, label, loss curve)")
    def validity_text(self, obj):
        return _validity_text(obj.validity)


class IriChunkInline(TeamScopedInline, admin.TabularInline):
    model = IriChunk
    team_path = "job__team"
    extra = 0
    can_delete = False
    fields = ["index", "size", "status", "progress_percent", "attempts", "worker", "started_at", "finished_at", "error"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="progress")
    def progress_percent(self, obj):
        return f"{obj.progress:.0%}"


@admin.register(IriJob)
class IriJobAdmin(TeamScopedAdmin, admin.ModelAdmin):
    audit_name = "iri_job"
    list_display = ["id", "name", "team", "backbone", "layer", "sweep_short", "recipe", "seed_kind", "status",
                    "progress_percent", "created_at"]
    list_filter = ["status", "team"]
    readonly_fields = ["name", "layer", "sweep", "status", "progress_percent", "error", "proxy_summary", "validity_summary", "spec", "record_json",
                       "targets_list", "created_at", "started_at", "finished_at"]
    inlines = [IriChunkInline, IriImageInline]
    actions = ["cancel_jobs", "retry_failed_chunks"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = IriJobForm
        return super().get_form(request, obj, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj else []

    def get_fields(self, request, obj=None):
        return self.readonly_fields if obj else IriJobForm.FIELDS

    def get_inlines(self, request, obj):
        return self.inlines if obj else []

    def save_model(self, request, obj, form, change):
        if change:
            return
        upload = form.cleaned_data.get("seed_upload")
        job = iri_job_create(name=obj.name, seed_upload_name=upload.name if upload else "", **form.job_arguments(),
                             actor=Actor.of_request(request))
        obj.pk = job.pk
        obj.refresh_from_db()

    def save_related(self, request, form, formsets, change):
        if change:  # nothing is editable, but Django's change message reads what the (read-only) inlines saved
            super().save_related(request, form, formsets, change)
        # a new job: its targets were set by the service

    @admin.action(description="Cancel the selected jobs", permissions=["change"])
    def cancel_jobs(self, request, queryset):
        self._each(request, queryset, iri_job_cancel, "cancelled")

    @admin.action(description="Retry the failed chunks of the selected jobs", permissions=["change"])
    def retry_failed_chunks(self, request, queryset):
        self._each(request, queryset, iri_job_retry, "queued again")

    def _each(self, request, queryset, service, verb):
        for job in queryset:
            try:
                service(job=job, actor=Actor.of_request(request))
            except ApplicationError as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                self.message_user(request, f"Job {job.pk}: {verb}.", messages.SUCCESS)

    @admin.display(description="progress")
    def progress_percent(self, obj):
        return f"{obj.progress:.0%}"

    @admin.display(description="sweep")
    def sweep_short(self, obj):
        """The layer sweep the job belongs to (its first 8 hex digits; one job per layer), or a dash."""
        return str(obj.sweep)[:8] if obj.sweep else "–"

    @admin.display(description="perceptual proxy (share of IRIs closer to target than to seed)")
    def proxy_summary(self, obj):
        summary = iri_job_proxy_summary(job=obj)
        return "; ".join(f"{m}: {v['aligned']}/{v['n']} = {v['share']:.0%}" for m, v in summary.items()) or "–"

    @admin.display(description="validity (IRIs within the null distribution, label matches)")
    def validity_summary(self, obj):
        v = iri_job_validity_summary(job=obj)
        if not v["with_record"]:
            return "–"
        text = f"{v['with_record']}/{v['n']} IRIs with a record"
        if v["median_percentile"] is not None:
            text += f"; null percentile median {v['median_percentile']:.1f} %, worst {v['max_percentile']:.1f} %"
        if v["label_checked"]:
            text += f"; labels match {v['label_matches']}/{v['label_checked']}"
        return text

    @admin.display(description="reproducibility record")
    def record_json(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(iri_job_record(job=obj), indent=2))

    @admin.display(description="targets")
    def targets_list(self, obj):
        return format_html_join(" ", "{}", ((_thumb(t.image, 64),) for t in obj.targets.all()))

from django import forms
from django.contrib import admin
from django.utils.html import format_html, format_html_join

from backend.exceptions import ApplicationError

from .models import IriImage, IriJob, TargetPhoto
from .services import iri_job_create, iri_spec_validate, photo_png_bytes, target_photo_create


def _thumb(stored, size: int = 96):
    return format_html('<img src="{}" width="{}" height="{}" style="image-rendering:pixelated">', stored.file.url, size, size)


class TargetPhotoForm(forms.ModelForm):
    photo = forms.FileField(help_text="PNG, JPEG, WebP, …; it is decoded and stored again as PNG.")

    class Meta:
        model = TargetPhoto
        fields = ["name"]

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
class TargetPhotoAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "preview", "created_at"]
    readonly_fields = ["preview"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = TargetPhotoForm
        return super().get_form(request, obj, **kwargs)

    def save_model(self, request, obj, form, change):
        if change:
            obj.save()
            return
        data = form.cleaned_data
        photo = target_photo_create(name=data["name"] or data["photo"].name, data=data["data"])
        obj.pk = photo.pk
        obj.refresh_from_db()

    @admin.display(description="photo")
    def preview(self, obj):
        return _thumb(obj.image)


class IriJobForm(forms.ModelForm):
    target_photos = forms.ModelMultipleChoiceField(queryset=TargetPhoto.objects.all(), widget=forms.CheckboxSelectMultiple)
    backbone = forms.ChoiceField(choices=())
    layer = forms.CharField(required=False, help_text="Dotted module name; empty = the backbone's penultimate layer.")
    recipe = forms.ChoiceField(choices=())
    seed_kind = forms.ChoiceField(choices=())
    steps = forms.IntegerField(initial=1000)
    step_size = forms.FloatField(initial=1.0)
    image_size = forms.IntegerField(required=False, help_text="Pixels per side; empty = the backbone's input size.")
    rng_seed = forms.IntegerField(initial=0)

    FIELDS = ["name", "target_photos", "backbone", "layer", "recipe", "seed_kind", "steps", "step_size", "image_size", "rng_seed"]

    class Meta:
        model = IriJob
        fields = ["name"]

    def __init__(self, *args, **kwargs):
        from iri_worker.engine import RECIPES, SEED_KINDS, list_backbones

        super().__init__(*args, **kwargs)
        self.fields["backbone"].choices = [(b, b) for b in list_backbones()]
        self.fields["backbone"].initial = "efficientnet_lite0"
        self.fields["recipe"].choices = [(r, r) for r in RECIPES]
        self.fields["seed_kind"].choices = [(s, s) for s in SEED_KINDS]

    def spec(self) -> dict:
        keys = ["backbone", "layer", "recipe", "seed_kind", "steps", "step_size", "image_size", "rng_seed"]
        return {k: self.cleaned_data[k] for k in keys if self.cleaned_data.get(k) not in (None, "")}

    def clean(self):
        cleaned = super().clean()
        if not self.errors:
            try:
                iri_spec_validate(self.spec())
            except ApplicationError as exc:
                raise forms.ValidationError(exc.message) from exc
        return cleaned


class IriImageInline(admin.TabularInline):
    model = IriImage
    extra = 0
    can_delete = False
    fields = ["target", "target_preview", "seed_preview", "iri_preview", "initial_loss", "final_loss", "best_step"]
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


@admin.register(IriJob)
class IriJobAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "backbone", "recipe", "seed_kind", "status", "progress_percent", "created_at"]
    list_filter = ["status"]
    readonly_fields = ["name", "status", "progress_percent", "error", "spec", "versions", "targets_list", "created_at", "started_at", "finished_at"]
    inlines = [IriImageInline]

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
        job = iri_job_create(targets=list(form.cleaned_data["target_photos"]), spec=form.spec(), name=obj.name)
        obj.pk = job.pk
        obj.refresh_from_db()

    def save_related(self, request, form, formsets, change):
        pass  # targets were set by the service

    @admin.display(description="progress")
    def progress_percent(self, obj):
        return f"{obj.progress:.0%}"

    @admin.display(description="targets")
    def targets_list(self, obj):
        return format_html_join(" ", "{}", ((_thumb(t.image, 64),) for t in obj.targets.all()))

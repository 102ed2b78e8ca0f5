"""Checkpoints in the admin: the upload is stored and a worker checks it (an operation run); the checkpoint's page
shows the check's progress, and the weights become READY for jobs only once it passed."""
from django import forms
from django.contrib import admin

from backend.exceptions import ApplicationError
from operations.admin import operation_runs_html
from teams.actors import Actor
from teams.admin import TeamScopedAdmin

from .models import Checkpoint
from .services import checkpoint_data_limits, checkpoint_upload
from .services.checkpoints import checkpoint_check_runs


class CheckpointForm(forms.ModelForm):
    weights = forms.FileField(help_text="A state dict saved with torch.save (also MadryLab robustness checkpoints). "
                                        "A worker loads it with weights_only=True: a pickle that runs code is refused.")
    backbone = forms.ChoiceField(choices=())

    class Meta:
        model = Checkpoint
        fields = ["name"]

    def __init__(self, *args, **kwargs):
        from iri_worker.engine import list_backbones

        super().__init__(*args, **kwargs)
        self.fields["name"].required = False
        self.fields["backbone"].choices = [(b, b) for b in list_backbones()]

    def clean(self):
        cleaned = super().clean()
        upload = cleaned.get("weights")
        if upload is not None and cleaned.get("backbone"):
            cleaned["data"] = upload.read()
            try:  # the size limit and the architecture; loading the weights is the worker's check
                checkpoint_data_limits(backbone=cleaned["backbone"], data=cleaned["data"])
            except ApplicationError as exc:
                raise forms.ValidationError({"weights": exc.message}) from exc
        return cleaned


@admin.register(Checkpoint)
class CheckpointAdmin(TeamScopedAdmin, admin.ModelAdmin):
    new_object_team = True
    audit_name = "checkpoint"
    list_display = ["id", "name", "backbone", "team", "status", "short_sha", "size", "created_at"]
    list_filter = ["status"]
    readonly_fields = ["name", "backbone", "status", "check_runs", "error", "sha256", "size", "file", "created_at"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = CheckpointForm
        return super().get_form(request, obj, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj else []

    def get_fields(self, request, obj=None):
        return self.readonly_fields if obj else ["name", "backbone", "weights"]

    def save_model(self, request, obj, form, change):
        if change:
            return
        data = form.cleaned_data
        checkpoint = checkpoint_upload(team=data["team"], name=data.get("name") or data["weights"].name,
                                       backbone=data["backbone"], data=data["data"], actor=Actor.of_request(request))
        obj.pk = checkpoint.pk
        obj.refresh_from_db()

    def response_add(self, request, obj, post_url_continue=None):
        if obj.status == Checkpoint.Status.CHECKING:
            self.message_user(request, f"{obj.name}: a worker is checking the weights; this page shows how far it "
                                       "got, and jobs can use them once they are READY.")
        return super().response_add(request, obj, post_url_continue)

    @admin.display(description="check (a worker loads the weights)")
    def check_runs(self, obj):
        return operation_runs_html(checkpoint_check_runs(checkpoint=obj)[:5])  # obj came through the scoped queryset

    @admin.display(description="sha256")
    def short_sha(self, obj):
        return obj.sha256[:12]

from django import forms
from django.contrib import admin, messages
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from backend.exceptions import ApplicationError
from iri_worker.models import IriJob
from results.services import alignment_report

from .models import Participant, Response, Survey
from .services import survey_check, survey_create, survey_publish


class SurveyCreateForm(forms.ModelForm):
    iri_jobs = forms.ModelMultipleChoiceField(
        queryset=IriJob.objects.filter(status=IriJob.Status.DONE),
        widget=forms.CheckboxSelectMultiple,
        label="finished IRI sets",
    )

    class Meta:
        model = Survey
        fields = ["slug", "title", "iri_jobs", "foil_rule", "trials_per_participant", "consent_md", "instructions_md"]

    def validate_unique(self):
        pass  # survey_check reports a taken slug in words

    def clean(self):
        cleaned = super().clean()
        if not self.errors:
            try:
                survey_check(slug=cleaned["slug"], iri_jobs=list(cleaned["iri_jobs"]), foil_rule=cleaned["foil_rule"])
            except ApplicationError as exc:
                raise forms.ValidationError(exc.message) from exc
        return cleaned


@admin.register(Survey)
class SurveyAdmin(admin.ModelAdmin):
    list_display = ["slug", "title", "status", "foil_rule", "trial_count", "participant_count", "link"]
    list_filter = ["status"]
    actions = ["publish"]
    readonly_fields = ["slug", "status", "task_type", "foil_rule", "link", "completion_code", "trial_count", "participant_count", "alignment"]
    fields = readonly_fields + ["title", "consent_md", "instructions_md"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = SurveyCreateForm
            kwargs["fields"] = None
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        return self.fields if obj else SurveyCreateForm.Meta.fields

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj else []

    def save_model(self, request, obj, form, change):
        if change:
            obj.save()
            return
        data = dict(form.cleaned_data)
        data["iri_jobs"] = list(data["iri_jobs"])
        survey = survey_create(**data)
        obj.pk = survey.pk
        obj.refresh_from_db()

    @admin.action(description="Publish the selected surveys")
    def publish(self, request, queryset):
        for survey in queryset:
            try:
                survey_publish(survey=survey)
            except ApplicationError as exc:
                self.message_user(request, f"{survey.slug}: {exc.message}", level=messages.ERROR)
            else:
                self.message_user(request, f"{survey.slug} is live.")

    @admin.display(description="trials")
    def trial_count(self, obj):
        return obj.trials.count()

    @admin.display(description="participants")
    def participant_count(self, obj):
        return obj.participants.count()

    @admin.display(description="link")
    def link(self, obj):
        url = reverse("survey-page", kwargs={"slug": obj.slug})
        return format_html('<a href="{}">{}</a>', url, url)

    @admin.display(description="alignment per IRI set")
    def alignment(self, obj):
        # The template escapes every value itself.
        return mark_safe(render_to_string("surveys/admin_alignment.html", {"report": alignment_report(survey=obj)}))


@admin.register(Participant)
class ParticipantAdmin(admin.ModelAdmin):
    list_display = ["id", "survey", "prolific_pid", "consented_at", "completed_at", "created_at"]
    list_filter = ["survey"]
    readonly_fields = [f.name for f in Participant._meta.fields]


@admin.register(Response)
class ResponseAdmin(admin.ModelAdmin):
    list_display = ["id", "participant", "trial", "choice", "rt_ms", "created_at"]
    list_filter = ["trial__survey"]
    readonly_fields = [f.name for f in Response._meta.fields]

"""The survey admin's Prolific actions (surveys.services.prolific, prolific_review): a draft study, its places,
its pause, and the review of its submissions, which a worker does as an operation run shown on the survey's page."""
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.utils.html import format_html, format_html_join

from backend.exceptions import ApplicationError
from operations.admin import operation_runs_html
from teams.actors import Actor

from .models import ProlificStudy
from .planning import prolific_pay_rates
from .services.prolific import (
    prolific_draft_defaults,
    prolific_places_from_forecast,
    prolific_places_target,
    prolific_study_create,
    prolific_study_pause,
)
from .services.prolific_review import prolific_review_runs, prolific_review_start


class ProlificDraftForm(forms.Form):
    """The draft's reward, estimated minutes and places; each left empty takes the survey's own figure."""

    reward_pence = forms.IntegerField(min_value=1, required=False)
    minutes = forms.IntegerField(
        min_value=1, required=False, label="estimated minutes",
        help_text="Empty: the time participants took (live sessions, else the pilot, else the planner's defaults).")
    places = forms.IntegerField(min_value=1, required=False, help_text="Empty: from the forecast (or the quota).")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        rates = prolific_pay_rates()  # the Prolific workspace's currency (PROLIFIC_CURRENCY)
        money, unit = rates["symbol"], "pence" if rates["currency"] == "GBP" else "cents"
        self.fields["reward_pence"].label = f"reward ({unit}, {rates['currency']})"
        self.fields["reward_pence"].help_text = (
            f"Per participant. Prolific's minimum is {money}{rates['minimum']:.2f}/h and it recommends "
            f"{money}{rates['recommended']:.2f}/h. Empty: the recommended rate for the estimated minutes.")


class SurveyProlificActions:
    """Mixed into SurveyAdmin: its Prolific actions and what its page shows of Prolific."""

    def _prolific_each(self, request, queryset, work) -> None:
        """One message per survey: what was done on Prolific, or why not (not configured, Prolific's refusal)."""
        for survey in queryset:
            try:
                done = work(survey)
            except ApplicationError as exc:
                self.message_user(request, f"{survey.slug}: {exc.message}", level=messages.ERROR)
            else:
                self.message_user(request, f"{survey.slug}: {done}")

    @admin.action(description="Create a Prolific draft study", permissions=["change"])
    def prolific_create(self, request, queryset):
        form = ProlificDraftForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():  # first the form: reward, minutes, places
            context = {**self.admin_site.each_context(request), "form": form, "surveys": queryset,
                       "title": "Create a Prolific draft study"}
            return TemplateResponse(request, "surveys/admin_prolific_draft.html", context)

        def create(survey):
            defaults = prolific_draft_defaults(survey=survey, minutes=form.cleaned_data["minutes"])
            minutes, reward = defaults["minutes"], form.cleaned_data["reward_pence"] or defaults["reward"]
            places = form.cleaned_data["places"] or prolific_places_target(survey=survey)
            study = prolific_study_create(survey=survey, reward_pence=reward, minutes=minutes, places=places,
                                          actor=Actor.of_request(request))
            return (f"draft study {study.study_id} on Prolific with {study.places} places, {minutes} minutes and a "
                    f"reward of {study.reward} ({defaults['currency']}): review and publish it there.")

        self._prolific_each(request, queryset, create)

    @admin.action(description="Set Prolific places from the forecast", permissions=["change"])
    def prolific_places(self, request, queryset):
        def places(survey):
            result = prolific_places_from_forecast(survey=survey, actor=Actor.of_request(request))
            if not result["changed"]:
                return f"the Prolific study keeps its {result['places']} places (the forecast needs {result['target']})."
            return f"the Prolific study now has {result['places']} places."

        self._prolific_each(request, queryset, places)

    @admin.action(description="Pause the Prolific study", permissions=["change"])
    def prolific_pause(self, request, queryset):
        def pause(survey):
            result = prolific_study_pause(survey=survey, actor=Actor.of_request(request))
            return "the Prolific study is paused." if result["paused"] else f"the Prolific study is already {result['status']}."

        self._prolific_each(request, queryset, pause)

    @admin.action(description="Review Prolific submissions", permissions=["change"])
    def prolific_review(self, request, queryset):
        # A worker sends the requests (one per return, one per 1,000 approvals); the survey's page shows how far.
        def review(survey):
            prolific_review_start(survey=survey, actor=Actor.of_request(request))  # audited as survey.prolific_review
            return ("the review of its Prolific submissions is queued; the survey's page shows its progress and each "
                    "submission's outcome.")

        self._prolific_each(request, queryset, review)

    @admin.display(description="Prolific study")
    def prolific(self, obj):
        study = ProlificStudy.objects.filter(survey=obj).first()
        if study is None:
            return "–"
        error = format_html(" · last error: {}", study.last_error) if study.last_error else ""
        return format_html("{} · {} · {} places · reward {} ({}) · updated {}{}", study.study_id, study.status,
                           study.places, study.reward, settings.PROLIFIC_CURRENCY,
                           study.updated_at.strftime("%Y-%m-%d %H:%M"), error)

    @admin.display(description="Prolific reviews (latest first)")
    def prolific_reviews(self, obj):
        runs = list(prolific_review_runs(survey=obj)[:5])  # obj came through the scoped queryset
        refused = [o for o in (runs[0].result.get("submissions", []) if runs else []) if o["outcome"] == "error"]
        lines = format_html_join("", "<li>submission {}: {}</li>", ((o["id"], o["error"]) for o in refused))
        return format_html("{}<ul>{}</ul>", operation_runs_html(runs), lines) if refused else operation_runs_html(runs)

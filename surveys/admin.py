from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from backend.exceptions import ApplicationError
from iri_worker.models import IriJob
from operations.admin import operation_runs_html
from operations.selectors import operation_run_list_of_subject
from operations.services import operation_run_create
from teams.actors import Actor
from teams.admin import TeamScopedAdmin
from teams.models import Role
from teams.selectors import team_scoped

from .models import Participant, Response, Survey
from .operation_kinds import BOTS_KIND
from .planning import prolific_pay_rates, survey_forecast, survey_plan
from .selectors import survey_monitor, survey_mturk_external_question
from .services import (
    build_summary,
    participant_erase,
    survey_check,
    survey_create_start,
    survey_pilot_reset,
    survey_publish,
    survey_rehearsal_erase,
)
from .admin_prolific import SurveyProlificActions
from .services.build_runs import survey_build_runs, survey_build_state
from .task_types import design_from, task_type_get, task_types
from .task_types.fields import admin_option_names, task_options


class SurveyCreateForm(forms.ModelForm):
    iri_jobs = forms.ModelMultipleChoiceField(
        queryset=IriJob.objects.filter(status=IriJob.Status.DONE),
        widget=forms.CheckboxSelectMultiple,
        label="finished IRI sets",
    )
    accept_goal_risk = forms.BooleanField(
        required=False, label="accept the goal's risk",
        help_text="Build a precision goal that the cap or the places may not reach where people disagree most "
                  "(refused otherwise); the survey's page keeps the warning.",
    )

    class Meta:
        model = Survey
        # the options of every task type's design (surveys.task_types), each the Survey column of its name
        fields = ["slug", "title", "iri_jobs", "task_type", *admin_option_names(), "accept_goal_risk"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["task_type"] = forms.ChoiceField(choices=[(t.name, t.label) for t in task_types()],
                                                     initial=Survey.TaskType.TWO_AFC)

    def validate_unique(self):
        pass  # survey_check reports a taken slug in words

    def _get_validation_exclusions(self):
        return {*super()._get_validation_exclusions(), "task_type"}  # the registry knows the task types, not the column

    def clean(self):
        cleaned = super().clean()
        if not self.errors:
            try:
                task = task_type_get(cleaned["task_type"])
                design = design_from(task_type=task, options=task_options(task, cleaned))
                survey_check(slug=cleaned["slug"], iri_jobs=list(cleaned["iri_jobs"]), task_type=task.name, design=design)
            except ApplicationError as exc:
                raise forms.ValidationError(exc.message) from exc
        return cleaned


class SurveyPlanForm(forms.Form):
    """The budget planner's questions (surveys.planning.survey_plan checks the values and names a bad one)."""

    half_width = forms.FloatField(label="goal: 95 % CI half-width", help_text="per IRI set, in (0, 0.5), e.g. 0.05")
    rate_per_hour = forms.FloatField(label="pay per hour")
    fee = forms.FloatField(label="platform fee", help_text="a fraction of the pay: 0.33 for 33 %")
    seconds_per_trial = forms.FloatField(required=False, help_text="empty: the pilot's")
    seconds_per_participant = forms.FloatField(required=False, help_text="the fixed part (consent, instructions); empty: the pilot's")
    p = forms.CharField(label="expected alignment", required=False,
                        help_text="one share for every set, or one per set, comma-separated; empty: the pilot's")
    cap_participants = forms.IntegerField(required=False, help_text="empty: the survey's max participants")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        rates = prolific_pay_rates()  # the Prolific workspace's currency (PROLIFIC_CURRENCY)
        money = rates["symbol"]
        self.fields["rate_per_hour"].label = f"pay per hour ({rates['currency']})"
        self.fields["rate_per_hour"].help_text = (
            f"{money}{rates['recommended']:g}/h recommended by Prolific; below {money}{rates['minimum']:g}/h a warning")

    def clean_p(self):
        text = self.cleaned_data["p"].strip()
        try:
            return [float(v) for v in text.split(",")] if text else None
        except ValueError:
            raise forms.ValidationError("Give shares between 0 and 1, comma-separated.") from None


@admin.register(Survey)
class SurveyAdmin(TeamScopedAdmin, SurveyProlificActions, admin.ModelAdmin):
    """The survey's pages; results.admin registers a subclass that adds the report and the analysis plan."""
    audit_name = "survey"
    list_display = ["slug", "title", "status", "build_state", "task_type", "foil_rule", "trial_count", "participant_count",
                    "link", "monitor_link"]
    list_filter = ["status", "task_type"]
    actions = ["publish", "run_bots", "pilot_reset", "rehearsal_erase", "prolific_create", "prolific_places",
               "prolific_pause", "prolific_review"]
    readonly_fields = [
        "slug", "status", "task_type", "foil_rule", "cluster_variant", "link", "pilot_link", "monitor_link",
        "planner_link", "trials_per_participant", "ratings_per_list", "catch_trials", "practice_trials", "trial_count",
        "participant_count", "size_policy", "iri_max_percentile", "iri_require_label_match", "built", "bot_runs",
        "precision_goal", "prolific", "prolific_reviews", "categories", "screening_trials", "mturk_external_question",
    ]
    editable_fields = [
        "title", "consent_md", "instructions_md", "completion_code", "code_failed_attention", "code_timed_out",
        "code_technical", "time_limit_minutes", "resume_policy", "max_participants", "practice_pass_fraction",
        "catch_min_accuracy", "rt_floor_ms", "rt_floor_max_fraction", "one_side_max_fraction", "one_side_min_trials",
        "refill_excluded", "retention_days", "precision_every", "fixation_ms", "image_ms", "mask_ms",
        "screening_pass_fraction", "code_screened_out", "desktop_only", "exclude_mistimed",
    ]
    fields = readonly_fields + editable_fields

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
            super().save_model(request, obj, form, change)
            return
        data = form.cleaned_data
        task = task_type_get(data["task_type"])
        # The trials (with their image I/O) are built by a worker; the survey's page shows the build meanwhile.
        survey = survey_create_start(slug=data["slug"], title=data["title"], iri_jobs=list(data["iri_jobs"]),
                                     task_type=task.name, actor=Actor.of_request(request), **task_options(task, data))
        obj.pk = survey.pk
        obj.refresh_from_db()
        self.message_user(request, f"{survey.slug}: a worker is building its trials; its page shows how far it got, "
                                   "and it can be published once the build is done.")

    @admin.display(description="what the builder did")
    def built(self, obj):
        runs = survey_build_runs(survey=obj)[:3]  # obj came through the scoped queryset
        state = survey_build_state(survey=obj)
        summary = build_summary(obj.build_report) if state == "built" else state
        return format_html("{}<br>{}", summary, operation_runs_html(runs)) if runs else summary

    @admin.display(description="build")
    def build_state(self, obj):
        return survey_build_state(survey=obj)

    @admin.action(description="Publish the selected surveys", permissions=["change"])
    def publish(self, request, queryset):
        for survey in queryset:
            try:
                survey_publish(survey=survey, actor=Actor.of_request(request))
            except ApplicationError as exc:
                self.message_user(request, f"{survey.slug}: {exc.message}", level=messages.ERROR)
            else:
                self.message_user(request, f"{survey.slug} is live.")

    @admin.action(description="Run 10 bots (pilot mode) against SITE_URL", permissions=["change"])
    def run_bots(self, request, queryset):
        # A worker runs them (minutes of HTTP traffic, too long for this request); the survey's page shows the run.
        params = {"participants": 10, "concurrency": 4, "policy": "perceptual"}
        for survey in queryset:
            operation_run_create(kind=BOTS_KIND, subject=survey, params=params, actor=Actor.of_request(request))
            self.message_user(request, f"{survey.slug}: 10 bots queued; their summary appears on the survey's page.")

    @admin.action(description="Delete pilot data (pilot and bot sessions)", permissions=["change"])
    def pilot_reset(self, request, queryset):
        for survey in queryset:
            deleted = survey_pilot_reset(survey=survey, actor=Actor.of_request(request))
            self.message_user(request, f"{survey.slug}: {deleted} pilot rows deleted.")

    @admin.action(description="Erase rehearsal sessions (run_bots --as-people)", permissions=["change"])
    def rehearsal_erase(self, request, queryset):
        for survey in queryset:
            erased = survey_rehearsal_erase(survey=survey, actor=Actor.of_request(request))
            self.message_user(
                request, f"{survey.slug}: {erased['sessions']} rehearsal session(s) with {erased['responses']} answers "
                         f"erased; {erased['slots_freed']} place(s) free again.")

    @admin.display(description="MTurk ExternalQuestion")
    def mturk_external_question(self, obj):
        html = format_html(
            '<textarea readonly rows="6" cols="110" id="mturk-external-question">{}</textarea>'
            "<div class=\"help\">The HIT's Question (create_hit). FrameHeight 0: MTurk fits the frame to the worker's "
            "window. Step by step: docs/mturk.md.</div>",
            survey_mturk_external_question(survey=obj),
        )
        if not settings.SITE_URL.startswith("https://"):  # MTurk refuses an ExternalURL that is not HTTPS
            html += format_html('<p class="errornote">SITE_URL is {}: MTurk needs an https:// address.</p>', settings.SITE_URL)
        return html

    def get_urls(self):
        extra = [
            path("<int:pk>/monitor/", self.admin_site.admin_view(self.monitor_view), name="surveys_survey_monitor"),
            path("<int:pk>/plan/", self.admin_site.admin_view(self.plan_view), name="surveys_survey_plan"),
        ]
        return extra + super().get_urls()

    def monitor_view(self, request, pk):
        survey = self.team_object_get(request, pk)
        mode = "pilot" if request.GET.get("mode") == "pilot" else "live"
        context = {
            **self.admin_site.each_context(request),
            "survey": survey,
            "monitor": survey_monitor(survey=survey, pilot=mode == "pilot"),
            "mode": mode,
            "forecast": survey_forecast(survey=survey) if mode == "live" else None,
            "title": f"Monitor: {survey.slug} ({mode})",
        }
        return TemplateResponse(request, "surveys/admin_monitor.html", context)

    def plan_view(self, request, pk):
        """The budget planner (a GET form: it only computes). Bad input re-shows the form with a 400."""
        survey = self.team_object_get(request, pk)
        initial = {"half_width": survey.precision_goal or 0.05, "rate_per_hour": prolific_pay_rates()["recommended"],
                   "fee": 0}
        form = SurveyPlanForm(request.GET or initial)
        plan = None
        if form.is_valid():
            try:
                plan = survey_plan(survey=survey, **form.cleaned_data)
            except ApplicationError as exc:
                field = exc.extra.get("field")
                form.add_error(field if field in form.fields else None, exc.message)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "survey": survey,
            "form": form,
            "plan": plan,
            "title": f"Budget plan: {survey.slug}",
        }
        return TemplateResponse(request, "admin/surveys/survey_plan.html", context, status=400 if form.errors else 200)

    @admin.display(description="budget planner")
    def planner_link(self, obj):
        return format_html('<a href="{}">participants and cost for a precision goal</a>',
                           reverse("admin:surveys_survey_plan", args=[obj.pk]))

    @admin.display(description="monitor")
    def monitor_link(self, obj):
        url = reverse("admin:surveys_survey_monitor", args=[obj.pk])
        return format_html('<a href="{}">live</a> · <a href="{}?mode=pilot">pilot</a>', url, url)

    @admin.display(description="pilot link")
    def pilot_link(self, obj):
        url = reverse("survey-page", kwargs={"slug": obj.slug}) + f"?pilot={obj.pilot_key}"
        return format_html('<a href="{}">{}</a>', url, url)

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

    @admin.display(description="bot runs (latest first)")
    def bot_runs(self, obj):
        runs = operation_run_list_of_subject(subject=obj, kind=BOTS_KIND)[:5]  # obj came through the scoped queryset
        rows = ((run.created_at.strftime("%Y-%m-%d %H:%M"), run.get_status_display(),
                 run.error or ", ".join(f"{k} {v}" for k, v in run.result.items() if not isinstance(v, (dict, list))))
                for run in runs)
        return format_html_join(mark_safe("<br>"), "{}: {} {}", rows) or "–"


@admin.register(Participant)
class ParticipantAdmin(TeamScopedAdmin, admin.ModelAdmin):
    team_path = "survey__team"
    list_display = ["id", "survey", "prolific_pid", "worker_id", "status", "stage", "excluded", "is_pilot", "is_bot",
                    "is_rehearsal", "last_seen_at", "created_at"]
    list_filter = ["survey", "status", "is_pilot", "is_bot", "is_rehearsal", "excluded"]
    readonly_fields = [f.name for f in Participant._meta.fields]
    actions = ["erase"]

    def has_add_permission(self, request):
        return False  # sessions come from enrolment; an add form of read-only fields could save nothing

    @admin.action(description="Erase the selected participants' data", permissions=["delete"])
    def erase(self, request, queryset):
        """Every session of the selected people (by Prolific PID or worker ID) in the surveys of the teams where
        the user is a researcher or owner: a data-rights request covers all of a person's data, not one row."""
        surveys = team_scoped(user=request.user, queryset=Survey.objects.all(), min_role=Role.RESEARCHER)
        people = set(queryset.values_list("prolific_pid", "worker_id"))
        for pid, worker_id in sorted(people):
            if not (pid or worker_id):
                self.message_user(request, "Sessions without a Prolific PID or worker ID were left alone.", level=messages.WARNING)
                continue
            result = participant_erase(surveys=surveys, prolific_pid=pid, worker_id="" if pid else worker_id,
                                       actor=Actor.of_request(request))
            erased = result["teams"].values()
            sessions, answers = sum(c["sessions"] for c in erased), sum(c["responses"] for c in erased)
            self.message_user(request, f"Participant {result['id_hash']}: {sessions} session(s) with {answers} answers erased.")


@admin.register(Response)
class ResponseAdmin(TeamScopedAdmin, admin.ModelAdmin):
    team_path = "participant__survey__team"
    list_display = ["id", "participant", "trial", "choice", "rt_ms", "created_at"]
    list_filter = ["trial__survey"]
    readonly_fields = [f.name for f in Response._meta.fields]

    def has_add_permission(self, request):
        return False  # answers come from participants; an add form of read-only fields could save nothing

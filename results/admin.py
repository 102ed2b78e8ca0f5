"""The researcher's report page per survey: tables, plots (PNG/SVG/PDF) and exports, under Results → Survey reports;
and the survey's own page extended with what results adds to it (the alignment table, the analysis plan)."""
from django import forms
from django.contrib import admin
from django.http import FileResponse, Http404, HttpResponse, HttpResponseNotAllowed, StreamingHttpResponse
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from backend.exceptions import ApplicationError
from operations.models import OperationRun
from operations.selectors import operation_run_list
from operations.services import operation_run_create
from surveys.admin import SurveyAdmin
from surveys.models import Survey
from teams.actors import Actor
from teams.admin import TeamScopedAdmin
from teams.models import Role

from .archive import ARCHIVE_KIND, study_archive_file_open, study_archive_run_start
from .export_conditions import conditions_csv
from .exports import EXPORTS, RAW_ID_EXPORTS, export_stream
from .models import SurveyReport
from .operation_kinds import PROXY_KIND
from .plan_document import plan_document
from .plan_export import plan_files
from .plans import plan_change, plan_changes, plan_locked, plan_report
from .plots import FORMATS, PLOTS, plot_render
from .proxy_choices import PROXY_METRICS
from .report_cache import report_cached


@admin.register(SurveyReport)
class SurveyReportAdmin(TeamScopedAdmin, admin.ModelAdmin):
    audit_name = "survey"
    list_display = ["slug", "title", "status", "report", "downloads"]
    list_filter = ["status"]
    search_fields = ["slug", "title"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="report")
    def report(self, obj):
        return format_html('<a href="{}">alignment report</a>', reverse("admin:results_surveyreport_report", args=[obj.pk]))

    @admin.display(description="exports")
    def downloads(self, obj):
        links = [
            format_html('<a href="{}">{}</a>', reverse("admin:results_surveyreport_export", args=[obj.pk, name]), name)
            for name in EXPORTS
        ]
        return format_html(" · ".join(["{}"] * len(links)), *links)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<int:pk>/report/", view(self.report_view), name="results_surveyreport_report"),
            path("<int:pk>/report/plot/<str:name>.<str:fmt>", view(self.plot_view), name="results_surveyreport_plot"),
            path("<int:pk>/report/export/<str:name>", view(self.export_view), name="results_surveyreport_export"),
            path("<int:pk>/report/proxy", view(self.proxy_view), name="results_surveyreport_proxy"),
            path("<int:pk>/report/archive", view(self.archive_view), name="results_surveyreport_archive"),
            path("<int:pk>/report/archive.zip", view(self.archive_download_view),
                 name="results_surveyreport_archive_download"),
            path("<int:pk>/report/analysis-plan.md", view(self.plan_view), {"fmt": "md"},
                 name="results_surveyreport_plan_md"),
            path("<int:pk>/report/analysis-plan.json", view(self.plan_view), {"fmt": "json"},
                 name="results_surveyreport_plan_json"),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # The report page is the change page; an id that is not a number names no survey (404, not a 500).
        if not object_id.isdecimal():
            raise Http404("No survey with that id.")
        return redirect("admin:results_surveyreport_report", int(object_id))

    def _survey(self, request, pk, min_role: str = Role.VIEWER) -> Survey:
        return self.team_object_get(request, pk, min_role=min_role, queryset=Survey.objects)

    def report_view(self, request, pk):
        survey = self._survey(request, pk)
        try:
            report = report_cached(survey=survey)
        except ApplicationError as exc:  # e.g. a stored threshold out of range: say which, rather than a 500
            return HttpResponse(exc.message, status=400, content_type="text/plain")
        report = {**report, "plan": plan_report(survey=survey)}  # never a cached plan: a deviation shows at once
        proxy_runs = list(operation_run_list(user=request.user, subject=survey, kind=PROXY_KIND)[:5])
        archive_runs = list(operation_run_list(user=request.user, subject=survey, kind=ARCHIVE_KIND)[:5])
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Alignment report: {survey.slug}",
            "survey": survey,
            "report": report,
            "plots": PLOTS,
            "formats": list(FORMATS),
            "exports": list(EXPORTS),
            "raw_id_exports": RAW_ID_EXPORTS,
            "metrics": PROXY_METRICS,
            "proxy_runs": proxy_runs,
            "archive_runs": archive_runs,
            "archive_running": any(run.active for run in archive_runs),
            "archive_latest": next((run for run in archive_runs if run.status == OperationRun.Status.DONE), None),
            "running": any(run.active for run in proxy_runs + archive_runs),
        }
        return TemplateResponse(request, "admin/results/surveyreport/report.html", context)

    def plot_view(self, request, pk, name, fmt):
        survey = self._survey(request, pk)
        if name not in PLOTS or fmt not in FORMATS:
            return HttpResponse("Unknown plot or format.", status=404, content_type="text/plain")
        data = plot_render(report=report_cached(survey=survey), name=name, fmt=fmt)
        response = HttpResponse(data, content_type=FORMATS[fmt])
        if request.GET.get("download"):
            response["Content-Disposition"] = f'attachment; filename="{survey.slug}-{name}.{fmt}"'
        return response

    def export_view(self, request, pk, name):
        raw_ids = request.GET.get("raw_ids") == "1"  # real Prolific / MTurk IDs instead of pseudonyms: researchers only
        survey = self._survey(request, pk, min_role=Role.RESEARCHER if raw_ids else Role.VIEWER)
        if name == "conditions.csv":
            body = conditions_csv(report={**report_cached(survey=survey), "plan": plan_report(survey=survey)})
            response = HttpResponse(body, content_type="text/csv")
        elif name in EXPORTS:
            content_type, chunks = export_stream(survey=survey, name=name, raw_ids=raw_ids)
            response = StreamingHttpResponse(chunks, content_type=content_type)
        else:
            return HttpResponse("Unknown export.", status=404, content_type="text/plain")
        response["Content-Disposition"] = f'attachment; filename="{survey.slug}-{name}"'
        self.audit(request, "export", survey, {"export": name, "raw_ids": True} if raw_ids else {"export": name})
        return response

    def plan_view(self, request, pk, fmt):
        """The analysis plan for a pre-registration: the Markdown, or the frozen plan's canonical JSON (its SHA-256 is
        the report's frozen hash)."""
        survey = self._survey(request, pk)
        name = f"{survey.slug}-analysis-plan.{fmt}"
        content_type = "text/markdown; charset=utf-8" if fmt == "md" else "application/json"
        response = HttpResponse(plan_files(survey=survey)[name].encode("utf-8"), content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        self.audit(request, "export", survey, {"export": f"analysis-plan.{fmt}"})
        return response

    def proxy_view(self, request, pk):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        survey = self._survey(request, pk, min_role=Role.RESEARCHER)
        metric = request.POST.get("metric", "")
        # A worker computes it (torch, every trial's images); the report page shows the run's progress meanwhile.
        operation_run_create(kind=PROXY_KIND, subject=survey, params={"metric": metric},
                             actor=Actor.of_request(request))
        self.message_user(request, f"Proxy choices ({metric}) are being computed by a worker; progress below.")
        return redirect("admin:results_surveyreport_report", survey.pk)

    def archive_view(self, request, pk):
        """The study archive, built by a worker (the report, every table, the stimuli: minutes for a large survey).
        External IDs are pseudonymised: an identified archive is `manage.py study_archive --identified` only."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        survey = self._survey(request, pk, min_role=Role.RESEARCHER)
        run, started = study_archive_run_start(survey=survey, actor=Actor.of_request(request))
        if started:
            self.message_user(request, "The study archive is being built by a worker; progress below.")
        else:
            self.message_user(request, "The study archive is already being built; progress below.")
        return redirect("admin:results_surveyreport_report", survey.pk)

    def archive_download_view(self, request, pk):
        """The survey's latest finished study archive (stored privately: only this view hands it out)."""
        survey = self._survey(request, pk)
        found = study_archive_file_open(survey=survey)
        if found is None:
            raise Http404("No study archive of this survey has been built yet.")
        run, file = found
        self.audit(request, "export", survey, {"export": "study-archive.zip", "run": run.pk})
        return FileResponse(file, as_attachment=True, filename=f"study-{survey.slug}.zip",
                            content_type="application/zip")


# ------------------------------------------------------------------------------------------- the survey's page

PLAN_REASON_MISSING = (
    "This survey has real answers, so this change to its analysis plan ({paths}) is a deviation from the plan frozen "
    "before the data: say why here. The report lists it with your reason; nothing was saved."
)


class SurveyChangeForm(forms.ModelForm):
    """The survey's change form, with the reason a change to the analysis plan needs once real answers exist."""

    plan_change_reason = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2, "cols": 80}), label="reason for a plan change",
        help_text="Required when a change touches the analysis plan (exclusion rules, stopping rule, design) after "
                  "the first real answer: it is a deviation, listed in the report with this reason.",
    )

    def clean(self):
        cleaned = super().clean()
        values = {f: cleaned[f] for f in self.changed_data if f in cleaned and f != "plan_change_reason"}
        if values and not cleaned.get("plan_change_reason", "").strip() and plan_locked(survey=self.instance):
            changes = plan_changes(survey=self.instance, values=values)
            if changes:
                paths = ", ".join(c["path"] for c in changes)
                self.add_error("plan_change_reason", PLAN_REASON_MISSING.format(paths=paths))
        return cleaned


def _after(fields: list[str], anchor: str, *names: str) -> list[str]:
    at = fields.index(anchor) + 1
    return [*fields[:at], *names, *fields[at:]]


class SurveyWithResultsAdmin(SurveyAdmin):
    """The survey's page (surveys.admin) with the alignment per IRI set and the analysis plan, whose changes after
    the first real answer are deviations that need a reason."""

    readonly_fields = [*_after(SurveyAdmin.readonly_fields, "built", "alignment"), "analysis_plan"]
    fields = [*readonly_fields, *SurveyAdmin.editable_fields, "plan_change_reason"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is not None:
            kwargs["form"] = SurveyChangeForm  # declares plan_change_reason, the one field that is not the model's
        return super().get_form(request, obj, **kwargs)

    def save_model(self, request, obj, form, change):
        if not change:
            super().save_model(request, obj, form, change)
            return
        before = plan_document(survey=Survey.objects.get(pk=obj.pk))  # for a survey live before plans were frozen
        super().save_model(request, obj, form, change)
        # A changed plan: a new version (a deviation with its reason after the first real answer), audit-logged.
        plan_change(survey=obj, reason=form.cleaned_data.get("plan_change_reason", ""),
                    actor=Actor.of_request(request), before=before)

    @admin.display(description="alignment per IRI set")
    def alignment(self, obj):
        # The template escapes every value itself.
        return mark_safe(render_to_string("results/admin_alignment.html", {"report": report_cached(survey=obj)}))

    @admin.display(description="analysis plan")
    def analysis_plan(self, obj):
        plan = plan_report(survey=obj)
        url = reverse("admin:results_surveyreport_report", args=[obj.pk]) + "#analysis-plan"
        state = (f"version {plan['version']}, {len(plan['deviations'])} deviation(s) from the plan frozen before "
                 "the data" if plan["frozen"] else "not frozen yet: frozen when published")
        return format_html('SHA-256 <code>{}</code> ({}) · <a href="{}">plan and deviations</a>', plan["sha256"], state,
                           url)


admin.site.unregister(Survey)
admin.site.register(Survey, SurveyWithResultsAdmin)

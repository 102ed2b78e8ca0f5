"""The researcher's report page per survey: tables, plots (PNG/SVG/PDF) and exports, under Results → Survey reports."""
from django.contrib import admin, messages
from django.core.cache import cache
from django.db.models import Count, Max
from django.http import HttpResponse, HttpResponseNotAllowed, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from backend.exceptions import ApplicationError
from surveys.models import Response, Survey
from teams.models import Role
from teams.selectors import team_role_check
from teams.services import audit_record

from . import exports
from .models import SurveyReport, TrialProxyChoice
from .plots import FORMATS, PLOTS, plot_render
from .services import PROXY_METRICS, alignment_report, survey_data_load, trial_proxy_choices_compute

EXPORTS = {
    "answers.csv": ("text/csv", exports.answers_csv),
    "answers.json": ("application/json", exports.answers_json),
    "model-vs-human.csv": ("text/csv", exports.mvh_csv),
    "participants.csv": ("text/csv", exports.participants_csv),
}
RAW_ID_EXPORTS = ["answers.csv", "answers.json", "participants.csv"]  # the ones with an external_id column


def report_cached(*, survey: Survey, n_boot: int = 1000, seed: int = 0) -> dict:
    """The report, reused while no answer or proxy choice has been added or erased (the page and its plots share it)."""
    answers = Response.objects.filter(trial__survey=survey).aggregate(n=Count("id"), last=Max("id"))
    proxies = TrialProxyChoice.objects.filter(trial__survey=survey).count()
    key = f"results:report:{survey.pk}:{survey.data_version}:{n_boot}:{seed}:{answers['n']}:{answers['last']}:{proxies}"
    return cache.get_or_set(key, lambda: alignment_report(survey=survey, n_boot=n_boot, seed=seed), 300)


@admin.register(SurveyReport)
class SurveyReportAdmin(admin.ModelAdmin):
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
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        return redirect("admin:results_surveyreport_report", int(object_id))

    def _survey(self, request, pk):
        survey = get_object_or_404(Survey, pk=pk)
        if not self.has_view_permission(request):
            raise PermissionError
        return survey

    def report_view(self, request, pk):
        survey = self._survey(request, pk)
        try:
            report = report_cached(survey=survey)
        except ApplicationError as exc:  # e.g. a stored threshold out of range: say which, rather than a 500
            return HttpResponse(exc.message, status=400, content_type="text/plain")
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
        survey = self._survey(request, pk)
        if name == "conditions.csv":
            body = exports.conditions_csv(report=report_cached(survey=survey))
            response = HttpResponse(body, content_type="text/csv")
        elif name in EXPORTS:
            raw_ids = request.GET.get("raw_ids") == "1"  # real Prolific / MTurk IDs instead of pseudonyms: researchers only
            if raw_ids:
                try:
                    team_role_check(user=request.user, team_id=survey.team_id, min_role=Role.RESEARCHER)
                except ApplicationError as exc:
                    return HttpResponse(exc.message, status=403, content_type="text/plain")
                audit_record(action="survey.export", request=request, obj=survey, details={"export": name, "raw_ids": True})
            content_type, make = EXPORTS[name]
            data = survey_data_load(survey=survey, raw_ids=raw_ids)
            response = StreamingHttpResponse(make(survey=survey, data=data), content_type=content_type)
        else:
            return HttpResponse("Unknown export.", status=404, content_type="text/plain")
        response["Content-Disposition"] = f'attachment; filename="{survey.slug}-{name}"'
        return response

    def proxy_view(self, request, pk):
        survey = self._survey(request, pk)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        metric = request.POST.get("metric", "")
        try:
            n = trial_proxy_choices_compute(survey=survey, metric=metric)
        except ApplicationError as exc:
            self.message_user(request, exc.message, level=messages.ERROR)
        else:
            self.message_user(request, f"Proxy choices ({metric}) computed for {n} trials.")
        return redirect("admin:results_surveyreport_report", survey.pk)

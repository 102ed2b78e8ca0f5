"""Operation runs in the admin: read-only, each team seeing its own (teams.admin.TeamScopedAdmin)."""
from django.contrib import admin
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from teams.admin import TeamScopedAdmin

from .models import OperationRun


def operation_runs_html(runs) -> str:
    """Runs as the pages of their subjects show them, one line each (newest first, as given): when, status, progress
    with its sentence, and why it failed; a dash for none."""
    rows = ((run.created_at.strftime("%Y-%m-%d %H:%M"), run.kind_label, run.get_status_display(), f"{run.progress:.0%}",
             run.error or run.progress_message) for run in runs)
    return format_html_join(mark_safe("<br>"), "{}: {} {} ({}) {}", rows) or format_html("{}", "–")


@admin.register(OperationRun)
class OperationRunAdmin(TeamScopedAdmin, admin.ModelAdmin):
    list_display = ["id", "kind_label", "subject_shown", "team", "status", "percent", "progress_message",
                    "created_by", "created_at", "finished_at"]
    list_filter = ["status", "kind"]
    fields = ["kind", "team", "subject_shown", "status", "percent", "progress_message", "params", "result", "error",
              "created_by", "created_at", "started_at", "finished_at"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("team", "created_by", "subject_type")

    def has_add_permission(self, request):
        return False  # runs are started where their work is (the survey's page, the report page, ...)

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="kind", ordering="kind")
    def kind_label(self, obj):
        return obj.kind_label

    @admin.display(description="subject")
    def subject_shown(self, obj):
        return str(obj.subject) if obj.subject_id is not None else "–"

    @admin.display(description="progress", ordering="progress")
    def percent(self, obj):
        return f"{obj.progress:.0%}"

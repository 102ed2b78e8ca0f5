"""The admin seen through teams: every team-owned page reads and writes through teams.selectors, and every
write goes to the audit log. Team roles replace Django's model permissions for members who are not superusers."""
from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import status

from backend.exceptions import ApplicationError

from . import admin_teams, admin_tokens  # noqa: F401 (register the teams', audit log's and API tokens' pages)
from .actors import Actor
from .models import Role, Team
from .selectors import (
    team_for_new_object,
    team_is_member,
    team_list,
    team_object_get,
    team_of,
    team_role_allows,
    team_scoped,
)
from .services import audit_record


class TeamScopedAdmin:
    """Mix into a ModelAdmin (inlines: TeamScopedInline) whose objects belong to a team through `team_path`.

    Members see their teams' objects (viewer or higher) and add, change, delete and run actions where they are
    researchers or owners; other teams' objects do not exist for them. Choices of team-owned related objects
    offer only the teams where the user may create. A new object with its own `team` field (`new_object_team`)
    goes to the user's only team, or to the one chosen in a `team` field shown when there are several; objects
    whose team follows from their parts (a job from its photos, a survey from its sets) leave that to the service.
    """

    team_path = "team"
    new_object_team = False
    audit_name = ""  # the audit log's prefix, e.g. "iri_job" (default: the model's name)

    # ---------------------------------------------------------------- what the user sees

    def get_queryset(self, request):
        return team_scoped(user=request.user, queryset=super().get_queryset(request), path=self.team_path)

    def team_object_get(self, request, pk, min_role: str = Role.VIEWER, queryset=None):
        """One object for a custom view: 404 for another team's (as for one that does not exist), 403 for a weak role."""
        queryset = self.model._default_manager.all() if queryset is None else queryset
        try:
            return team_object_get(user=request.user, queryset=queryset, min_role=min_role, path=self.team_path, pk=pk)
        except ApplicationError as exc:
            if exc.status_code == status.HTTP_404_NOT_FOUND:
                raise Http404(exc.message) from exc
            raise PermissionDenied(exc.message) from exc

    def team_of(self, obj) -> Team | None:
        return team_of(obj=obj, path=self.team_path)

    def get_list_filter(self, request):
        # A plain related-field filter lists every row of the related table (other teams' surveys too);
        # RelatedOnlyFieldListFilter lists only those that occur in this user's queryset.
        return [
            (f, admin.RelatedOnlyFieldListFilter) if isinstance(f, str) and self._is_relation(f) else f
            for f in super().get_list_filter(request)
        ]

    def _is_relation(self, lookup: str) -> bool:
        model = self.model
        for part in lookup.split("__"):
            field = model._meta.get_field(part)
            model = field.related_model
        return model is not None

    # ---------------------------------------------------------------- roles instead of model permissions

    def permission_team(self, obj) -> Team | None:
        """The team whose role decides what the user may do with obj (for inlines, obj is the parent)."""
        return self.team_of(obj)

    def _may(self, request, obj, min_role: str) -> bool:
        if obj is None:
            return team_list(user=request.user, min_role=min_role).exists()
        team = self.permission_team(obj)
        return team is not None and team_role_allows(user=request.user, team_id=team.pk, min_role=min_role)

    def has_module_permission(self, request):
        return team_is_member(user=request.user)

    def has_view_permission(self, request, obj=None):
        return self._may(request, obj, Role.VIEWER)

    def has_add_permission(self, request, obj=None):  # inlines pass the parent object
        return self._may(request, obj, Role.RESEARCHER)

    def has_change_permission(self, request, obj=None):
        return self._may(request, obj, Role.RESEARCHER)

    def has_delete_permission(self, request, obj=None):
        return self._may(request, obj, Role.RESEARCHER)

    # ---------------------------------------------------------------- choices and the new object's team

    def team_choices(self, request, queryset):
        """Choices of team-owned objects: only those of teams where the user may create."""
        if any(f.name == "team" for f in queryset.model._meta.fields):
            return team_scoped(user=request.user, queryset=queryset, min_role=Role.RESEARCHER)
        return queryset

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if "queryset" not in kwargs:
            kwargs["queryset"] = self.team_choices(request, db_field.related_model._default_manager.all())
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if "queryset" not in kwargs:
            kwargs["queryset"] = self.team_choices(request, db_field.related_model._default_manager.all())
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def team_field_shown(self, request, obj) -> bool:
        """The add form asks for the team only when the user may create in several."""
        return self.new_object_team and obj is None and team_list(user=request.user, min_role=Role.RESEARCHER)[1:2].exists()

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if self.team_field_shown(request, obj):
            (name, options), *rest = fieldsets
            fieldsets = [(name, {**options, "fields": ["team", *options["fields"]]}), *rest]
        return fieldsets

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        model_admin, resolves_team = self, self.new_object_team and obj is None
        shows_team = self.team_field_shown(request, obj)

        class TeamScopedForm(form):
            def __init__(self, *args, **kw):
                super().__init__(*args, **kw)
                # Fields declared on a form never pass through formfield_for_*: scoped here, on this form's copies.
                for name in self.declared_fields:
                    field = self.fields.get(name)
                    if isinstance(field, forms.ModelChoiceField):
                        field.queryset = model_admin.team_choices(request, field.queryset)
                if shows_team:
                    self.fields["team"] = forms.ModelChoiceField(
                        queryset=team_list(user=request.user, min_role=Role.RESEARCHER), help_text="The team that owns it.")

            def clean(self):
                cleaned = super().clean()
                if resolves_team:
                    chosen = cleaned.get("team")
                    try:
                        cleaned["team"] = team_for_new_object(user=request.user, team_id=chosen.pk if chosen else None)
                    except ApplicationError as exc:
                        self.add_error("team" if shows_team else None, exc.message)
                return cleaned

        TeamScopedForm.__name__ = form.__name__
        return TeamScopedForm

    # ---------------------------------------------------------------- actions and the audit log

    def response_action(self, request, queryset):
        # Actions write: they touch only the selected objects of teams where the user is a researcher or owner.
        writable = team_scoped(user=request.user, queryset=queryset, min_role=Role.RESEARCHER, path=self.team_path)
        return super().response_action(request, writable)

    def audit(self, request, action: str, obj, details: dict | None = None) -> None:
        name = self.audit_name or obj._meta.model_name
        audit_record(actor=Actor.of_request(request), action=f"{name}.{action}", obj=obj, team=self.team_of(obj),
                     details=details)

    def save_model(self, request, obj, form, change):
        if change and not self.has_change_permission(request, obj):
            raise PermissionDenied  # the changelist's editable rows are saved without a per-object check
        super().save_model(request, obj, form, change)
        self.audit(request, "change" if change else "create", obj, {"fields": form.changed_data} if change else None)

    def delete_model(self, request, obj):
        self.audit(request, "delete", obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.audit(request, "delete", obj)
        super().delete_queryset(request, queryset)


class TeamScopedInline(TeamScopedAdmin):
    """For inlines: Django asks their permissions with the parent object, whose own `team` decides."""

    def permission_team(self, parent) -> Team | None:
        return parent.team

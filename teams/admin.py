"""The admin seen through teams: every team-owned page reads and writes through teams.selectors, and every
write goes to the audit log. Team roles replace Django's model permissions for members who are not superusers."""
from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Subquery
from django.http import Http404
from rest_framework import status
from rest_framework.authtoken.admin import TokenAdmin
from rest_framework.authtoken.models import TokenProxy

from backend.exceptions import ApplicationError

from .actors import Actor
from .models import AuditEntry, Membership, Role, Team
from .selectors import (
    team_for_new_object,
    team_is_member,
    team_list,
    team_object_get,
    team_of,
    team_role_allows,
    team_scoped,
    user_find,
)
from .services import LAST_OWNER, api_token_audit, api_token_revoke, audit_record, membership_remove, membership_set


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


# ------------------------------------------------------------------------------------------- teams


UNKNOWN_MEMBER = ("No single user has the username or e-mail '{value}': check the spelling "
                  "(an e-mail that several accounts share needs the username).")
TWICE = "{user} appears twice: one row per member."
ALREADY_MEMBER = "{user} is already a member: change the role in their row."


class MembershipForm(forms.ModelForm):
    """A new member is named by exact username or e-mail (nobody is listed to pick from); an existing member's
    row changes only the role."""

    member = forms.CharField(label="user", help_text="Their exact username or e-mail.")

    class Meta:
        model = Membership
        fields = ["role"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["member"].disabled = True
            self.fields["member"].initial = self.instance.user.get_username()

    def clean_member(self):
        if self.instance.pk:
            return self.instance.user
        user = user_find(identifier=self.cleaned_data["member"])
        if user is None:
            raise forms.ValidationError(UNKNOWN_MEMBER.format(value=self.cleaned_data["member"]))
        if Membership.objects.filter(team_id=self.instance.team_id, user=user).exists():
            raise forms.ValidationError(ALREADY_MEMBER.format(user=user.get_username()))
        return user

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("member") is not None:
            self.instance.user = cleaned["member"]
        return cleaned


class MembershipFormSet(forms.BaseInlineFormSet):
    def clean(self):
        super().clean()
        if any(self.errors):
            return
        kept = [f for f in self.forms if (f.instance.pk or f.has_changed()) and not self._should_delete_form(f)]
        users = [f.cleaned_data["member"] for f in kept]
        twice = {u for u in users if users.count(u) > 1}
        if twice:
            raise forms.ValidationError(TWICE.format(user=twice.pop().get_username()))
        # The rule itself lives in teams.services (membership_set / membership_remove); said here for the whole
        # form at once, before anything is saved.
        had_owner = Membership.objects.filter(team_id=self.instance.pk, role=Role.OWNER).exists()
        if had_owner and not any(f.cleaned_data["role"] == Role.OWNER for f in kept):
            raise forms.ValidationError(LAST_OWNER.format(team=self.instance.name))


class MembershipInline(admin.TabularInline):
    """Owners manage who is in their team and with which role; other members see the list."""

    model = Membership
    form = MembershipForm
    formset = MembershipFormSet
    extra = 0
    fields = ["member", "role", "created_at"]
    readonly_fields = ["created_at"]

    def _may(self, request, team, min_role: str) -> bool:
        if team is None:  # Django also asks without the team (before it lists the rows; on a new team's page)
            return request.user.is_superuser or team_list(user=request.user, min_role=min_role).exists()
        return team_role_allows(user=request.user, team_id=team.pk, min_role=min_role)

    def get_queryset(self, request):
        return super().get_queryset(request).filter(team__in=team_list(user=request.user)).select_related("user")

    @admin.display(description="user")
    def member(self, obj):  # the read-only rows (the editable ones show the form's field)
        return obj.user.get_username()

    def has_view_permission(self, request, obj=None):
        return self._may(request, obj, Role.VIEWER)

    def has_add_permission(self, request, obj=None):
        return self._may(request, obj, Role.OWNER)

    def has_change_permission(self, request, obj=None):
        return self._may(request, obj, Role.OWNER)

    def has_delete_permission(self, request, obj=None):
        return self._may(request, obj, Role.OWNER)


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    """Superusers create teams; owners manage their members; researchers and viewers see their teams read-only."""

    list_display = ["name", "your_role", "members", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline]

    def get_queryset(self, request):
        role = Membership.objects.filter(team=OuterRef("pk"), user=request.user).values("role")[:1]
        return team_list(user=request.user).annotate(your_role=Subquery(role))

    def has_module_permission(self, request):
        return team_is_member(user=request.user)

    def has_view_permission(self, request, obj=None):
        return team_is_member(user=request.user) if obj is None else team_role_allows(user=request.user, team_id=obj.pk, min_role=Role.VIEWER)

    def has_change_permission(self, request, obj=None):
        if obj is None:
            return team_list(user=request.user, min_role=Role.OWNER).exists()
        return team_role_allows(user=request.user, team_id=obj.pk, min_role=Role.OWNER)

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser

    def get_readonly_fields(self, request, obj=None):
        return ["name"] if obj is not None and not request.user.is_superuser else []

    @admin.display(description="your role")
    def your_role(self, obj):
        return obj.your_role or "superuser"

    @admin.display(description="members")
    def members(self, obj):
        return obj.memberships.count()

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        audit_record(actor=Actor.of_request(request), action="team.change" if change else "team.create", obj=obj,
                     team=obj)

    def save_formset(self, request, form, formset, change):
        # Through the membership services, which keep the last owner; new owners first and removals last, so a
        # form that hands the team to another owner never leaves it without one on the way.
        team = form.instance
        formset.save(commit=False)
        changed = formset.new_objects + [m for m, _ in formset.changed_objects]
        actor = Actor.of_request(request)
        for membership in sorted(changed, key=lambda m: m.role != Role.OWNER):
            membership_set(team=team, user=membership.user, role=membership.role, actor=actor)
        for membership in formset.deleted_objects:
            membership_remove(team=team, user=membership.user, actor=actor)

    def delete_model(self, request, obj):
        audit_record(actor=Actor.of_request(request), action="team.delete", obj=obj, team=None,
                     details={"name": obj.name})
        super().delete_model(request, obj)


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """The audit log, read-only: owners read their teams' entries, superusers all."""

    list_display = ["created_at", "username", "action", "team", "object_type", "object_repr", "client_ip"]
    list_filter = ["action", ("team", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["username", "object_repr", "object_id", "object_type"]
    readonly_fields = [f.name for f in AuditEntry._meta.fields]

    def get_queryset(self, request):
        entries = super().get_queryset(request)
        if request.user.is_superuser:
            return entries
        return entries.filter(team__in=team_list(user=request.user, min_role=Role.OWNER))

    def has_module_permission(self, request):
        return team_is_member(user=request.user)

    def has_view_permission(self, request, obj=None):
        if request.user.is_superuser:
            return True
        if obj is None:
            return team_list(user=request.user, min_role=Role.OWNER).exists()
        return obj.team_id is not None and team_role_allows(user=request.user, team_id=obj.team_id, min_role=Role.OWNER)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# ------------------------------------------------------------------------------------------- API tokens


admin.site.unregister(TokenProxy)


@admin.register(TokenProxy)
class OwnTokenAdmin(TokenAdmin):
    """API tokens: a staff member who is not a superuser sees and may revoke only their own."""

    def get_queryset(self, request):
        tokens = super().get_queryset(request)
        return tokens if request.user.is_superuser else tokens.filter(user=request.user)

    def has_module_permission(self, request):
        return True  # every staff member may have a token

    def has_view_permission(self, request, obj=None):
        return request.user.is_superuser or obj is None or obj.user_id == request.user.pk

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser or obj is None or obj.user_id == request.user.pk

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        return request.user.is_superuser

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        api_token_audit(actor=Actor.of_request(request), action="token.issue", user=obj.user)

    def delete_model(self, request, obj):
        api_token_revoke(user=obj.user, actor=Actor.of_request(request))

    def delete_queryset(self, request, queryset):  # the list's bulk delete action
        for token in queryset.select_related("user"):
            api_token_revoke(user=token.user, actor=Actor.of_request(request))

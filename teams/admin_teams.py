"""Teams and their members, and the audit log, in the admin: superusers create teams, owners manage their members
and read their teams' audit log."""
from django import forms
from django.contrib import admin
from django.db.models import OuterRef, Subquery

from .actors import Actor
from .models import AuditEntry, Membership, Role, Team
from .selectors import team_is_member, team_list, team_role_allows, user_find
from .services import LAST_OWNER, audit_record, membership_remove, membership_set

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

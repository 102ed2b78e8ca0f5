"""API tokens in the admin: a staff member sees and revokes their own; superusers see all, and only they issue them."""
from django.contrib import admin
from rest_framework.authtoken.admin import TokenAdmin
from rest_framework.authtoken.models import TokenProxy

from .actors import Actor
from .services import api_token_audit, api_token_revoke

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

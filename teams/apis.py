"""One's own API token, for scripts: `Authorization: Token <token>`."""
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from .services import api_token_audit, api_token_issue, api_token_revoke


class ApiTokenApi(APIView):
    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField(help_text="shown only in this response")
        created = serializers.DateTimeField()

    @extend_schema(responses={201: OutputSerializer})
    def post(self, request):
        """A new API token for the caller; the one they had stops working."""
        token = api_token_issue(user=request.user)
        api_token_audit(action="token.issue", user=request.user, request=request)
        return Response(self.OutputSerializer({"token": token.key, "created": token.created}).data, status=status.HTTP_201_CREATED)

    def delete(self, request):
        """The caller's API token stops working."""
        revoked = api_token_revoke(user=request.user)
        api_token_audit(action="token.revoke", user=request.user, request=request, details={"had_token": revoked})
        return Response(status=status.HTTP_204_NO_CONTENT)

"""One's own API token, for scripts: `Authorization: Token <token>`."""
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from .services import api_token_issue, api_token_revoke, audit_record


class ApiTokenApi(APIView):
    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField(help_text="shown only in this response")
        created = serializers.DateTimeField()

    @extend_schema(responses={201: OutputSerializer})
    def post(self, request):
        """A new API token for the caller; the one they had stops working."""
        token = api_token_issue(user=request.user)
        audit_record(action="token.issue", request=request)  # never the token itself
        return Response(self.OutputSerializer({"token": token.key, "created": token.created}).data, status=status.HTTP_201_CREATED)

    def delete(self, request):
        """The caller's API token stops working."""
        revoked = api_token_revoke(user=request.user)
        audit_record(action="token.revoke", request=request, details={"had_token": revoked})
        return Response(status=status.HTTP_204_NO_CONTENT)

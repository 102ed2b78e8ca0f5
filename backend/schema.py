"""OpenAPI for our APIViews: each view's nested InputSerializer / OutputSerializer describe it."""
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import get_doc
from drf_spectacular.types import OpenApiTypes


class ApiSchema(AutoSchema):
    def get_description(self):
        # The method's docstring, else the view's own: never a base class's (teams.apis.TeamScopedApi's explains
        # the plumbing, not the endpoint).
        method_doc = get_doc(getattr(self.view, self.method.lower(), None))
        return method_doc or (get_doc(type(self.view)) if vars(type(self.view)).get("__doc__") else "")

    def get_request_serializer(self):
        return getattr(self.view, "InputSerializer", None)

    def get_response_serializers(self):
        return getattr(self.view, "OutputSerializer", None) or OpenApiTypes.OBJECT

    def _get_serializer_name(self, serializer, direction, bypass_extensions=False) -> str:
        # Nested serializers share short names ("Input"); prefix the class they live in ("EnrollInput").
        name = super()._get_serializer_name(serializer, direction, bypass_extensions)
        outer, _, inner = type(serializer).__qualname__.rpartition(".")
        if outer:
            name = outer.split(".")[-1].removesuffix("Api").removesuffix("Serializer") + name
        return name

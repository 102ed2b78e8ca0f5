"""PostgreSQL text and jsonb cannot hold NUL (U+0000): a request carrying one is refused with a 400 up front,
instead of reaching a query and failing there as a 500."""
from django.http import JsonResponse
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MESSAGE = "Null characters are not allowed."


def holds_null_character(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(holds_null_character(k) or holds_null_character(v) for k, v in value.items())
    if isinstance(value, list):
        return any(holds_null_character(v) for v in value)
    return False


class NullRefusingJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        if holds_null_character(data):
            raise ParseError(f"JSON parse error - {MESSAGE}")
        return data


def refuse_null_characters_in_url(get_response):
    def middleware(request):
        if "\x00" in request.path_info or "%00" in request.META.get("QUERY_STRING", ""):
            return JsonResponse({"message": "Null characters are not allowed in the URL.", "extra": {}}, status=400)
        return get_response(request)

    return middleware

"""Fuzzing: schemathesis generates requests from the OpenAPI schema; no request may cause a server error."""
import json
import math
from urllib.parse import urlencode

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from django.test import Client
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from rest_framework.authtoken.models import Token
from schemathesis.core import NOT_SET

from drf_spectacular.generators import SchemaGenerator

# One xdist worker runs the whole module, so that the last test counts every request the others sent.
pytestmark = pytest.mark.xdist_group("api_fuzz")
MIN_REQUESTS = 1000
# The served schema is for researchers only; the fuzzer reads the same schema from its generator.
schema = schemathesis.openapi.from_dict(json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True))))
OPERATIONS = sum(1 for result in schema.get_all_operations() if result.ok())
calls = {"n": 0}
# One test client for all requests: a new one loads the middleware again, and WhiteNoise's scan of the static files
# (DEBUG) was four fifths of this module's time. Its cookies are cleared before each request, as a new client's are.
client = Client()


@pytest.fixture
def auth_header(db, django_user_model):
    user = django_user_model.objects.create_user(username="fuzzer", password="x", is_staff=True, is_superuser=True)
    return {"Authorization": f"Token {Token.objects.create(user=user).key}"}


@schema.parametrize()
@settings(
    max_examples=math.ceil(MIN_REQUESTS / (2 * max(OPERATIONS, 1))) + 10,  # two calls per example
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_generated_request_causes_a_server_error(case, auth_header, live_survey):
    for headers in (auth_header, {}):  # as a researcher and as an anonymous visitor
        response = send(case, headers)
        calls["n"] += 1
        assert response.status_code < 500, f"{case.method} {case.formatted_path} -> {response.status_code}"


def send(case, headers: dict):
    """Send the generated request through Django's test client (it keeps the test's database transaction)."""
    body, content_type = b"", "application/octet-stream"
    if case.body is not NOT_SET:
        content_type = case.media_type or "application/json"
        if isinstance(case.body, (bytes, str)):  # a deliberately malformed payload: send it as it is
            body = case.body
        elif content_type == "application/json":
            body = json.dumps(case.body)
        elif content_type.startswith("multipart/"):
            content_type, body = MULTIPART_CONTENT, encode_multipart(BOUNDARY, _plain_multipart(case.body))
        else:
            body = urlencode(case.body, doseq=True)
    query = f"?{urlencode(case.query, doseq=True)}" if case.query else ""
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in {**(case.headers or {}), **headers}.items()}
    client.cookies.clear()
    return client.generic(case.method, case.formatted_path + query, body, content_type=content_type, **extra)


def _plain_multipart(data) -> dict:
    if not isinstance(data, dict):
        return {"file": str(data)}
    return {k: (v if isinstance(v, (str, bytes)) else json.dumps(v)) for k, v in data.items()}


def test_the_fuzzer_sent_enough_requests():
    assert calls["n"] >= MIN_REQUESTS, f"only {calls['n']} requests over {OPERATIONS} operations"

"""A local stand-in for Prolific's REST API, strict the way Prolific is, so the tests never reach the network and
catch what Prolific would refuse. A threaded HTTP server on 127.0.0.1 at a free port, with state: studies, their
places and status, and submissions a test seeds.

What it checks, as Prolific documents it (tests/surveys/prolific_openapi.yml, an excerpt of the OpenAPI document
with its source and date):
- every request against the document: the path and method must be one of its operations, the query parameters
  declared ones (a required one present, enums respected), the JSON body valid against the operation's schema
  (jsonschema, draft 2020-12); anything else is a 400 (404 for an unknown path) in Prolific's error shape
  {"error": {"status", "error_code", "title", "detail"}}, `detail` naming the field;
- the documented rules beyond the schema: completion codes unique within a study; maximum_allowed_time at least
  2 + 2e + 2√e minutes for an estimate of e; a reward of at least the minimum hourly pay in the account's currency
  (£6.00 / $8.00 per hour: Prolific's payment principles); once published, places only grow and only a few fields
  change; the study transitions of the document's table (STOP -> COMPLETED, PAUSE only from ACTIVE); a repeated
  APPROVE is ignored; bulk approval of up to 1,000 submission ids;
- pages: submissions come page_size at a time (default 20) with `_links.next` absolute, relative, or (without
  `_links`) by page number, as `next_links` says.

Faults: `fail(status, ...)` makes the next matching requests answer 429 (with Retry-After) or a 5xx, before
Prolific acts or (after=True) after it acted and the answer was lost. `requests` holds every request received,
`approvals` every submission that became APPROVED, `returns` every return request sent.

    with FakeProlific(token="t") as fake:
        settings.PROLIFIC_API_URL = fake.url
"""
from __future__ import annotations

import json
import math
import re
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

OPENAPI = yaml.safe_load((Path(__file__).with_name("prolific_openapi.yml")).read_text())
DOC_URI = "urn:prolific-openapi"
REGISTRY = Registry().with_resource(DOC_URI, Resource.from_contents(OPENAPI, default_specification=DRAFT202012))
PREFIX = "/api/v1/"

# Study status -> action -> new status: the table of POST studies/{id}/transition/ in the OpenAPI document.
TRANSITIONS = {
    "UNPUBLISHED": {"PUBLISH": "ACTIVE", "SCHEDULE_PUBLISH": "SCHEDULED"},
    "SCHEDULED": {"CANCEL_PUBLISH": "UNPUBLISHED"},
    "ACTIVE": {"PAUSE": "PAUSED", "STOP": "COMPLETED"},
    "PAUSED": {"START": "ACTIVE", "STOP": "COMPLETED"},
}
PUBLISHED_CHANGEABLE = {"internal_name", "total_available_places"}  # of the fields this project sends
# Prolific's payment principles (researcher-help.prolific.com): the minimum hourly reward, in pence / cents.
MINIMUM_PER_HOUR = {"GBP": 600, "USD": 800}
SYMBOL = {"GBP": "£", "USD": "$"}
BULK_APPROVE_MAX = 1000
FAULT_TITLES = {429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
                504: "Gateway Timeout"}


@dataclass
class Fault:
    status: int
    times: int
    method: str | None
    path: str | None  # a regex on the path after /api/v1/
    after: bool  # Prolific acted, then the answer was lost
    retry_after: int | None

    def matches(self, method: str, path: str) -> bool:
        return (self.method in (None, method)) and (self.path is None or re.fullmatch(self.path, path) is not None)


class FakeProlific:
    def __init__(self, *, token: str = "fake-token", currency: str = "GBP", next_links: str | None = "relative"):
        self.token = token
        self.currency = currency
        self.next_links = next_links  # "absolute", "relative", or None: no _links, pages by number
        self.studies: dict[str, dict] = {}
        self.submissions: dict[str, dict] = {}
        self.requests: list[dict] = []  # {"method", "path", "query", "body", "status"} in order
        self.approvals: list[str] = []
        self.returns: list[str] = []
        self.faults: list[Fault] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.url = self.origin + PREFIX
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeProlific:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------------------------ what tests do

    def publish(self, study_id: str) -> None:
        """The researcher publishes the draft on Prolific's site."""
        self.studies[study_id]["status"] = "ACTIVE"

    def seed_submission(self, study_id: str, *, participant_id: str, study_code: str | None,
                        status: str = "AWAITING REVIEW", submission_id: str | None = None) -> str:
        """A submission; its id is the SESSION_ID Prolific put in the participant's link."""
        submission_id = submission_id or uuid.uuid4().hex[:24]
        self.submissions[submission_id] = {
            "id": submission_id, "study_id": study_id, "participant_id": participant_id, "status": status,
            "study_code": study_code, "started_at": "2026-11-29T10:00:00Z", "has_siblings": False,
            "return_requested": None,
        }
        return submission_id

    def fail(self, status: int, *, times: int = 1, method: str | None = None, path: str | None = None,
             after: bool = False, retry_after: int | None = 0) -> None:
        self.faults.append(Fault(status, times, method, path, after, retry_after if status == 429 else None))

    def calls(self, method: str, pattern: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == method and re.fullmatch(pattern, r["path"])]

    def bodies(self, method: str, pattern: str) -> list[dict]:
        return [r["body"] for r in self.calls(method, pattern)]

    # ------------------------------------------------------------------------------------ the document

    def validate(self, method: str, path: str, query: dict, body: dict) -> tuple[int, dict] | None:
        """None when the request is one the OpenAPI document allows, else Prolific's error answer."""
        operation = _operation(method, path)
        if operation is None:
            return 404, error(404, "Not found", f"{method} {PREFIX}{path} is not an operation of Prolific's API.")
        declared = {p["name"]: p for p in operation.get("parameters", []) if p["in"] == "query"}
        problems: dict[str, list[str]] = {}
        for name in query.keys() - declared.keys():
            problems[name] = ["Unknown query parameter."]
        for name, parameter in declared.items():
            if name not in query:
                if parameter.get("required"):
                    problems[name] = ["This query parameter is required."]
                continue
            value = query[name]
            if parameter["schema"].get("type") == "integer":
                value = int(value) if re.fullmatch(r"-?\d+", value) else value
            for problem in _validator(parameter["schema"]).iter_errors(value):
                problems.setdefault(name, []).append(problem.message)
        schema = (((operation.get("requestBody") or {}).get("content") or {}).get("application/json") or {}).get("schema")
        if schema is not None:
            for problem in _validator(schema).iter_errors(body):
                path = [str(p) for p in problem.absolute_path]
                if problem.validator == "required":  # name the missing field itself, as Prolific does
                    missing = re.match(r"'(.+)' is a required property", problem.message)
                    path, message = path + [missing.group(1)], "This field is required."
                else:
                    message = problem.message
                problems.setdefault(".".join(path) or "non_field_errors", []).append(message)
        elif body:
            problems["non_field_errors"] = ["This operation takes no body."]
        return (400, error(400, "Invalid request", problems)) if problems else None

    # ------------------------------------------------------------------------------------ the API

    def handle(self, method: str, path: str, query: dict, body: dict) -> tuple[int, dict]:
        routes = [
            ("POST", r"studies/", self.study_create),
            ("GET", r"studies/", self.study_list),
            ("GET", r"studies/([^/]+)/", self.study_get),
            ("PATCH", r"studies/([^/]+)/", self.study_update),
            ("POST", r"studies/([^/]+)/transition/", self.study_transition),
            ("GET", r"submissions/", self.submission_list),
            ("POST", r"submissions/bulk-approve/", self.submission_bulk_approve),
            ("POST", r"submissions/([^/]+)/transition/", self.submission_transition),
            ("POST", r"submissions/([^/]+)/request-return/", self.submission_request_return),
        ]
        for route_method, pattern, view in routes:
            match = re.fullmatch(pattern, path)
            if match and method == route_method:
                with self.lock:
                    return view(query, body, *match.groups())
        return 404, error(404, "Not found", f"No {method} {path}")

    def study_create(self, query: dict, body: dict) -> tuple[int, dict]:
        codes = [c.get("code") for c in body.get("completion_codes", [])]
        if len(set(codes)) != len(codes):
            return 400, error(400, "Invalid request", {"completion_codes": ["Each code must be unique within a study."]})
        estimate = body["estimated_completion_time"]
        shortest = 2 + 2 * estimate + 2 * math.sqrt(estimate)
        if "maximum_allowed_time" in body and body["maximum_allowed_time"] < shortest:
            return 400, error(400, "Invalid request", {"maximum_allowed_time": [
                f"Must be at least {shortest:.1f} minutes for an estimated completion time of {estimate} minutes."]})
        per_hour = body["reward"] * 60 / estimate
        minimum = MINIMUM_PER_HOUR[self.currency]
        if per_hour < minimum:
            money = SYMBOL[self.currency]
            return 400, error(400, "Invalid request", {"reward": [
                f"The reward per hour ({money}{per_hour / 100:.2f}) is below the minimum of "
                f"{money}{minimum / 100:.2f} per hour."]})
        study_id = uuid.uuid4().hex[:24]
        self.studies[study_id] = {**body, "id": study_id, "status": "UNPUBLISHED"}
        return 201, self.studies[study_id]

    def study_list(self, query: dict, body: dict) -> tuple[int, dict]:
        keys = ("id", "name", "internal_name", "status", "total_available_places", "reward", "estimated_completion_time")
        return 200, {"results": [{k: s.get(k) for k in keys} for s in self.studies.values()]}

    def study_get(self, query: dict, body: dict, study_id: str) -> tuple[int, dict]:
        study = self.studies.get(study_id)
        return (200, study) if study else (404, error(404, "Not found", "No such study."))

    def study_update(self, query: dict, body: dict, study_id: str) -> tuple[int, dict]:
        study = self.studies.get(study_id)
        if study is None:
            return 404, error(404, "Not found", "No such study.")
        if study["status"] != "UNPUBLISHED":
            fixed = sorted(body.keys() - PUBLISHED_CHANGEABLE)
            if fixed:
                return 400, error(400, "Invalid request", {f: ["Cannot be changed once the study is published."] for f in fixed})
            places = body.get("total_available_places")
            if places is not None and places < study["total_available_places"]:
                return 400, error(400, "Invalid request", {"total_available_places": [
                    "You can only increase the number of places on a published study."]})
            if places is not None and places > study["total_available_places"] and study["status"] == "COMPLETED":
                study["status"] = "ACTIVE"  # "A completed study will become active again"
        study.update(body)
        return 200, study

    def study_transition(self, query: dict, body: dict, study_id: str) -> tuple[int, dict]:
        study = self.studies.get(study_id)
        if study is None:
            return 404, error(404, "Not found", "No such study.")
        new = TRANSITIONS.get(study["status"], {}).get(body["action"])
        if new is None:
            return 400, error(400, "Invalid transition", f"Cannot {body['action']} a study that is {study['status']}.")
        study["status"] = new
        return 200, study

    def submission_list(self, query: dict, body: dict) -> tuple[int, dict]:
        study_id = query["study"]
        if study_id not in self.studies:
            return 404, error(404, "Not found", "No such study.")
        wanted = query.get("status", "").replace("_", " ")  # AWAITING_REVIEW -> AWAITING REVIEW; TIMED-OUT stays
        rows = [s for s in self.submissions.values()
                if s["study_id"] == study_id and (not wanted or s["status"] == wanted)]
        page, size = int(query.get("page", 1)), int(query.get("page_size", 20))
        chunk = rows[(page - 1) * size: page * size]
        answer = {"results": chunk, "meta": {"count": len(rows)}}
        if self.next_links:
            more = page * size < len(rows)
            later = f"submissions/?study={study_id}&page={page + 1}&page_size={size}" + (
                f"&status={query['status']}" if "status" in query else "")
            href = (self.url + later if self.next_links == "absolute" else PREFIX + later) if more else None
            answer["_links"] = {"next": {"href": href}, "previous": {"href": None}}
        return 200, answer

    def _approve(self, submission: dict) -> None:
        if submission["status"] == "AWAITING REVIEW":
            submission["status"] = "APPROVED"
            self.approvals.append(submission["id"])

    def submission_transition(self, query: dict, body: dict, submission_id: str) -> tuple[int, dict]:
        submission = self.submissions.get(submission_id)
        if submission is None:
            return 404, error(404, "Not found", "No such submission.")
        action = body["action"]
        if action == "APPROVE" and submission["status"] == "APPROVED":
            return 200, submission  # "the second request will be ignored"
        if action == "REJECT" and (len(body.get("message", "")) < 100 or "rejection_category" not in body):
            return 400, error(400, "Invalid request", {"message": ["A rejection needs a category and a message of "
                                                                   "at least 100 characters."]})
        if action not in ("APPROVE", "REJECT") or submission["status"] != "AWAITING REVIEW":
            return 400, error(400, "Invalid transition", f"Cannot {action} a submission that is {submission['status']}.")
        if action == "APPROVE":
            self._approve(submission)
        else:
            submission["status"] = "REJECTED"
        return 200, submission

    def submission_bulk_approve(self, query: dict, body: dict) -> tuple[int, dict]:
        ids = body.get("submission_ids") or []
        if "participant_ids" in body:
            return 400, error(400, "Invalid request", {"participant_ids": ["Use submission_ids."]})
        if len(ids) > BULK_APPROVE_MAX:
            return 400, error(400, "Invalid request", {"submission_ids": [f"At most {BULK_APPROVE_MAX} ids."]})
        unknown = [i for i in ids if i not in self.submissions]
        if unknown:
            return 400, error(400, "Invalid request", {"submission_ids": [f"Unknown submissions: {unknown}."]})
        for submission_id in ids:
            self._approve(self.submissions[submission_id])  # approved ones are left as they are
        return 200, "The request to bulk approve has been made successfully."

    def submission_request_return(self, query: dict, body: dict, submission_id: str) -> tuple[int, dict]:
        submission = self.submissions.get(submission_id)
        if submission is None:
            return 404, error(404, "Not found", "No such submission.")
        reasons = body["request_return_reasons"]
        if not reasons or not all(isinstance(r, str) and r for r in reasons):
            return 400, error(400, "Invalid request", {"request_return_reasons": ["A list of reasons is required."]})
        submission["return_requested"] = "2026-11-29T12:00:00Z"
        submission["return_reasons"] = reasons
        self.returns.append(submission_id)
        return 200, {"id": submission_id, "status": submission["status"], "participant": submission["participant_id"],
                     "return_requested": submission["return_requested"]}

    def _fault_for(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and fault.matches(method, path):
                    fault.times -= 1
                    return fault
        return None

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    return self._send(400, error(400, "Invalid request", "The body is not JSON."))
                split = urlsplit(self.path)
                path = split.path.removeprefix(PREFIX)
                query = {k: v[-1] for k, v in parse_qs(split.query).items()}
                record = {"method": self.command, "path": path, "query": query, "body": body}
                fake.requests.append(record)
                if self.headers.get("Authorization") != f"Token {fake.token}":
                    return self._send(401, error(401, "Unauthorized", "Authentication credentials were not provided."),
                                      record)
                fault = fake._fault_for(self.command, path)
                if fault is not None and not fault.after:
                    return self._send(fault.status, _fault_body(fault.status), record, fault.retry_after)
                refused = fake.validate(self.command, path, query, body)
                answer = refused or fake.handle(self.command, path, query, body)
                if fault is not None:  # Prolific acted; the answer is lost on the way
                    return self._send(fault.status, _fault_body(fault.status), record)
                self._send(*answer, record)

            do_GET = do_POST = do_PATCH = _serve

            def _send(self, code: int, answer, record: dict | None = None, retry_after: int | None = None):
                if record is not None:
                    record["status"] = code
                data = json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if retry_after is not None:
                    self.send_header("Retry-After", str(retry_after))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        return Handler


def _operation(method: str, path: str) -> dict | None:
    for template, operations in OPENAPI["paths"].items():
        pattern = re.sub(r"\{\w+\}", r"[^/]+", template.removeprefix(PREFIX))
        if re.fullmatch(pattern, path):
            return operations.get(method.lower())
    return None


def _validator(schema: dict) -> Draft202012Validator:
    if "$ref" in schema:  # '#/components/...': resolved in the whole document, as are the refs inside it
        schema = {"$ref": DOC_URI + schema["$ref"]}
    return Draft202012Validator(schema, registry=REGISTRY)


def _fault_body(status: int) -> dict:
    detail = "Request was throttled. Expected available in a moment." if status == 429 else "Please try again later."
    return error(status, FAULT_TITLES.get(status, "Error"), detail)


def error(status: int, title: str, detail) -> dict:
    return {"error": {"status": status, "error_code": 140000 + status, "title": title, "detail": detail}}

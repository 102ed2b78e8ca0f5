"""A local stand-in for Prolific's REST API (the endpoints surveys/prolific.py calls), so the tests never reach the
network. A threaded HTTP server on 127.0.0.1 at a free port, with state: studies, their places and status, and
submissions a test seeds. It answers like Prolific: 401 without the token, 404 for an unknown id, and 400 with
{"error": {...}} for what Prolific refuses (pausing a draft, fewer places on a published study, approving a
submission that is not awaiting review). `requests` holds every request received, for the tests to read.

    with FakeProlific(token="t") as fake:
        settings.PROLIFIC_API_URL = fake.url
"""
from __future__ import annotations

import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Study status -> action -> new status (Prolific's study life cycle, the part the client uses).
TRANSITIONS = {
    "UNPUBLISHED": {"PUBLISH": "ACTIVE"},
    "ACTIVE": {"PAUSE": "PAUSED", "STOP": "AWAITING REVIEW"},
    "PAUSED": {"START": "ACTIVE", "STOP": "AWAITING REVIEW"},
}
REQUIRED = ("name", "description", "external_study_url", "prolific_id_option", "completion_codes",
            "total_available_places", "estimated_completion_time", "reward")


class FakeProlific:
    def __init__(self, *, token: str = "fake-token"):
        self.token = token
        self.studies: dict[str, dict] = {}
        self.submissions: dict[str, dict] = {}
        self.requests: list[dict] = []  # {"method", "path", "body"} in order
        self.fail_next: tuple[int, dict] | None = None  # (status, body) for the next authorised request
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v1/"
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
                        status: str = "AWAITING REVIEW") -> str:
        submission_id = uuid.uuid4().hex[:24]
        self.submissions[submission_id] = {
            "id": submission_id, "study_id": study_id, "participant_id": participant_id, "status": status,
            "study_code": study_code, "started_at": "2026-11-29T10:00:00Z", "return_requested": None,
        }
        return submission_id

    def bodies(self, method: str, pattern: str) -> list[dict]:
        return [r["body"] for r in self.requests if r["method"] == method and re.fullmatch(pattern, r["path"])]

    # ------------------------------------------------------------------------------------ the API

    def handle(self, method: str, path: str, body: dict) -> tuple[int, dict]:
        routes = [
            ("POST", r"studies/", self.study_create),
            ("GET", r"studies/(\w+)/", self.study_get),
            ("PATCH", r"studies/(\w+)/", self.study_update),
            ("POST", r"studies/(\w+)/transition/", self.study_transition),
            ("GET", r"studies/(\w+)/submissions/", self.submission_list),
            ("POST", r"submissions/(\w+)/transition/", self.submission_transition),
            ("POST", r"submissions/(\w+)/request-return/", self.submission_request_return),
        ]
        for route_method, pattern, view in routes:
            match = re.fullmatch(pattern, path)
            if match and method == route_method:
                with self.lock:
                    return view(body, *match.groups())
        return 404, error("Not found", f"No {method} {path}")

    def study_create(self, body: dict) -> tuple[int, dict]:
        missing = [f for f in REQUIRED if f not in body]
        if missing:
            return 400, error("Invalid request", {f: ["This field is required."] for f in missing})
        codes = [c.get("code") for c in body["completion_codes"]]
        if len(set(codes)) != len(codes):
            return 400, error("Invalid request", {"completion_codes": ["Completion codes must be unique."]})
        study_id = uuid.uuid4().hex[:24]
        self.studies[study_id] = {**body, "id": study_id, "status": "UNPUBLISHED"}
        return 201, self.studies[study_id]

    def _study(self, study_id: str) -> dict | None:
        return self.studies.get(study_id)

    def study_get(self, body: dict, study_id: str) -> tuple[int, dict]:
        study = self._study(study_id)
        return (200, study) if study else (404, error("Not found", "No such study."))

    def study_update(self, body: dict, study_id: str) -> tuple[int, dict]:
        study = self._study(study_id)
        if study is None:
            return 404, error("Not found", "No such study.")
        places = body.get("total_available_places")
        if places is not None and study["status"] != "UNPUBLISHED" and places < study["total_available_places"]:
            return 400, error("Invalid request", {"total_available_places": [
                "You can only increase the number of places on a published study."]})
        study.update(body)
        if study["status"] == "AWAITING REVIEW" and places:  # more places reopen a finished study
            study["status"] = "ACTIVE"
        return 200, study

    def study_transition(self, body: dict, study_id: str) -> tuple[int, dict]:
        study = self._study(study_id)
        if study is None:
            return 404, error("Not found", "No such study.")
        new = TRANSITIONS.get(study["status"], {}).get(body.get("action"))
        if new is None:
            return 400, error("Invalid transition", f"Cannot {body.get('action')} a study that is {study['status']}.")
        study["status"] = new
        return 200, study

    def submission_list(self, body: dict, study_id: str) -> tuple[int, dict]:
        if self._study(study_id) is None:
            return 404, error("Not found", "No such study.")
        rows = [s for s in self.submissions.values() if s["study_id"] == study_id]
        return 200, {"results": rows, "_links": {"next": {"href": None}}, "meta": {"count": len(rows)}}

    def submission_transition(self, body: dict, submission_id: str) -> tuple[int, dict]:
        submission = self.submissions.get(submission_id)
        if submission is None:
            return 404, error("Not found", "No such submission.")
        action = body.get("action")
        if action not in ("APPROVE", "REJECT"):
            return 400, error("Invalid request", {"action": [f"{action!r} is not a valid choice."]})
        if submission["status"] != "AWAITING REVIEW":
            return 400, error("Invalid transition", f"The submission is {submission['status']}, not awaiting review.")
        submission["status"] = "APPROVED" if action == "APPROVE" else "REJECTED"
        return 200, submission

    def submission_request_return(self, body: dict, submission_id: str) -> tuple[int, dict]:
        submission = self.submissions.get(submission_id)
        if submission is None:
            return 404, error("Not found", "No such submission.")
        reasons = body.get("request_return_reasons")
        if not reasons or not all(isinstance(r, str) and r for r in reasons):
            return 400, error("Invalid request", {"request_return_reasons": ["A list of reasons is required."]})
        submission["return_requested"] = "2026-11-29T12:00:00Z"
        submission["return_reasons"] = reasons
        return 200, {"id": submission_id, "status": submission["status"], "participant": submission["participant_id"],
                     "return_requested": submission["return_requested"]}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    return self._send(400, error("Invalid request", "The body is not JSON."))
                path = self.path.split("?")[0].removeprefix("/api/v1/")
                fake.requests.append({"method": self.command, "path": path, "body": body})
                if self.headers.get("Authorization") != f"Token {fake.token}":
                    return self._send(401, error("Unauthorized", "Authentication credentials were not provided."))
                if fake.fail_next is not None:
                    (code, answer), fake.fail_next = fake.fail_next, None
                    return self._send(code, answer)
                self._send(*fake.handle(self.command, path, body))

            do_GET = do_POST = do_PATCH = _serve

            def _send(self, code: int, answer: dict):
                data = json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        return Handler


def error(title: str, detail) -> dict:
    return {"error": {"error_code": 140001, "title": title, "detail": detail}}

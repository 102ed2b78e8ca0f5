"""A small client for Prolific's public REST API (https://docs.prolific.com/api-reference), the few endpoints the
admin uses: create a draft study, read and patch it, transition it (publish, pause, start), list its submissions
and approve them or ask for their return.

Configured by PROLIFIC_API_TOKEN (empty: Prolific is off, `prolific_enabled()` is False) and PROLIFIC_API_URL
(default the real API; the tests point it at a local fake). No Django models here: services call this.
"""
from __future__ import annotations

import requests
from django.conf import settings

NOT_CONFIGURED = "Prolific is not configured: set PROLIFIC_API_TOKEN."
UNREACHABLE = "Prolific did not answer ({error}); nothing was changed here, try again."
TIMEOUT_S = (5, 30)  # connect, read


class ProlificError(Exception):
    """Prolific refused a request (4xx/5xx) or could not be reached; `message` is Prolific's own words."""

    def __init__(self, message: str, *, status_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.status_code = status_code


def prolific_enabled() -> bool:
    return bool(settings.PROLIFIC_API_TOKEN)


def _error_message(response: requests.Response) -> str:
    """Prolific answers errors as {"error": {"title", "detail", "additional_information"}}; anything else verbatim."""
    try:
        body = response.json()
    except ValueError:
        return f"Prolific answered {response.status_code}: {response.text[:300] or response.reason}"
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        parts = [error.get("title"), error.get("detail"), error.get("additional_information")]
        words = " ".join(_flatten(p) for p in parts if p)
        if words:
            return f"Prolific answered {response.status_code}: {words}"
    return f"Prolific answered {response.status_code}: {_flatten(error)[:300]}"


def _flatten(value) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_flatten(v)}" for k, v in value.items())
    if isinstance(value, list):
        return " ".join(_flatten(v) for v in value)
    return str(value)


class ProlificClient:
    def __init__(self, *, token: str | None = None, base_url: str | None = None):
        token = settings.PROLIFIC_API_TOKEN if token is None else token
        if not token:
            raise ProlificError(NOT_CONFIGURED)
        self.base_url = (base_url or settings.PROLIFIC_API_URL).rstrip("/") + "/"
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Token {token}", "Accept": "application/json"})

    def _request(self, method: str, path: str, json: dict | None = None) -> dict:
        url = path if path.startswith("http") else self.base_url + path.lstrip("/")
        try:
            response = self.session.request(method, url, json=json, timeout=TIMEOUT_S)
        except requests.RequestException as exc:
            raise ProlificError(UNREACHABLE.format(error=type(exc).__name__)) from exc
        if response.status_code >= 400:
            raise ProlificError(_error_message(response), status_code=response.status_code)
        return response.json() if response.content else {}

    # ------------------------------------------------------------------------------------------ studies

    def study_create(self, **fields) -> dict:
        return self._request("POST", "studies/", fields)

    def study_get(self, study_id: str) -> dict:
        return self._request("GET", f"studies/{study_id}/")

    def study_update(self, study_id: str, **fields) -> dict:
        return self._request("PATCH", f"studies/{study_id}/", fields)

    def study_transition(self, study_id: str, action: str) -> dict:
        """action: PUBLISH, PAUSE, START (resume) or STOP."""
        return self._request("POST", f"studies/{study_id}/transition/", {"action": action})

    # ------------------------------------------------------------------------------------------ submissions

    def submission_list(self, study_id: str) -> list[dict]:
        """Every submission of the study (id, participant_id, status, study_code, ...), following the pages."""
        page = self._request("GET", f"studies/{study_id}/submissions/")
        results = list(page.get("results", []))
        while next_url := ((page.get("_links") or {}).get("next") or {}).get("href"):
            page = self._request("GET", next_url)
            results += page.get("results", [])
        return results

    def submission_approve(self, submission_id: str) -> dict:
        return self._request("POST", f"submissions/{submission_id}/transition/", {"action": "APPROVE"})

    def submission_request_return(self, submission_id: str, reasons: list[str]) -> dict:
        """Asks the participant to return the submission (a researcher cannot return it; rejecting would penalise
        someone who did nothing wrong). Prolific marks this endpoint experimental."""
        return self._request("POST", f"submissions/{submission_id}/request-return/", {"request_return_reasons": reasons})

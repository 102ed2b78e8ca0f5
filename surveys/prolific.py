"""A small client for Prolific's public REST API (https://docs.prolific.com/api-reference), the few endpoints the
admin uses: create a draft study (and find one made before), read and patch it, transition it (pause), list its
submissions and approve them in bulk or ask for their return. docs/prolific.md says how it is used.

Configured by PROLIFIC_API_TOKEN (empty: Prolific is off, `prolific_enabled()` is False) and PROLIFIC_API_URL
(default the real API; the tests point it at a local fake). No Django models here: services call this.

Retries (Prolific's "Managing high loads": back off exponentially on 429, honour Retry-After): urllib3's Retry on
the requests session, with jitter, at most PROLIFIC_RETRY_TOTAL retries of at most PROLIFIC_RETRY_WAIT_MAX_S
each (a longer Retry-After is cut to it). A 429 means Prolific did nothing, so every request may be sent again;
after a 5xx or a lost answer Prolific may have acted, so only requests that are safe to repeat are (reads, a PATCH
that sets a number, and approvals, which Prolific ignores when repeated). The others (create a study, pause it,
ask for a return) are left to the caller, who reads Prolific's state before trying again.
"""
from __future__ import annotations

from urllib.parse import urljoin, urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

NOT_CONFIGURED = "Prolific is not configured: set PROLIFIC_API_TOKEN."
UNREACHABLE = "Prolific did not answer ({error}); nothing was changed here, try again."
FOREIGN_NEXT = "Prolific's next page points away from its API ({url}); the list was not followed there."
TIMEOUT_S = (5, 30)  # connect, read
RETRY_STATUSES = (429, 500, 502, 503, 504)
PAGE_SIZE = 200
MAX_PAGES = 500  # 100,000 submissions: a loop in the links, not a study, if ever reached
BULK_APPROVE_MAX = 1000  # Prolific recommends at most 1,000 ids per bulk-approve request (OpenAPI document)


class ProlificError(Exception):
    """Prolific refused a request (4xx/5xx) or could not be reached; `message` is Prolific's own words, `fields`
    the request fields it named. `uncertain`: Prolific may have acted all the same (a 5xx or no answer), so read
    its state before trying again. `transient`: trying again later may succeed (429, 5xx, no answer)."""

    def __init__(self, message: str, *, status_code: int | None = None, fields: tuple[str, ...] = ()):
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.fields = fields

    @property
    def transient(self) -> bool:
        return self.status_code is None or self.status_code == 429 or self.status_code >= 500

    @property
    def uncertain(self) -> bool:
        return self.status_code is None or self.status_code >= 500


def prolific_enabled() -> bool:
    return bool(settings.PROLIFIC_API_TOKEN)


def _error(response: requests.Response) -> ProlificError:
    """Prolific answers errors as {"error": {"status", "error_code", "title", "detail"}}, `detail` a sentence or
    {field: [messages]}; anything else verbatim."""
    try:
        body = response.json()
    except ValueError:
        return ProlificError(f"Prolific answered {response.status_code}: {response.text[:300] or response.reason}",
                             status_code=response.status_code)
    error = body.get("error", body) if isinstance(body, dict) else body
    fields: tuple[str, ...] = ()
    if isinstance(error, dict):
        detail = error.get("detail")
        fields = tuple(detail) if isinstance(detail, dict) else ()
        parts = [error.get("title"), detail, error.get("additional_information")]
        words = " ".join(_flatten(p) for p in parts if p)
    else:
        words = _flatten(error)[:300]
    return ProlificError(f"Prolific answered {response.status_code}: {words}", status_code=response.status_code,
                         fields=fields)


def _flatten(value) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_flatten(v)}" for k, v in value.items())
    if isinstance(value, list):
        return " ".join(_flatten(v) for v in value)
    return str(value)


def _session(token: str, *, statuses: tuple[int, ...], read_retries: int | None) -> requests.Session:
    retry = Retry(
        total=settings.PROLIFIC_RETRY_TOTAL,
        read=read_retries,
        status_forcelist=statuses,
        allowed_methods=None,  # which requests may repeat is chosen by the session they go through
        backoff_factor=settings.PROLIFIC_RETRY_BACKOFF_S,
        backoff_jitter=settings.PROLIFIC_RETRY_BACKOFF_S,
        backoff_max=settings.PROLIFIC_RETRY_WAIT_MAX_S,
        retry_after_max=settings.PROLIFIC_RETRY_WAIT_MAX_S,
        respect_retry_after_header=True,
        raise_on_status=False,  # the last answer comes back, so its message can be shown
    )
    session = requests.Session()
    session.mount("https://", HTTPAdapter(max_retries=retry))
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.headers.update({"Authorization": f"Token {token}", "Accept": "application/json"})
    return session


class ProlificClient:
    def __init__(self, *, token: str | None = None, base_url: str | None = None):
        token = settings.PROLIFIC_API_TOKEN if token is None else token
        if not token:
            raise ProlificError(NOT_CONFIGURED)
        self.base_url = (base_url or settings.PROLIFIC_API_URL).rstrip("/") + "/"
        self.repeatable = _session(token, statuses=RETRY_STATUSES, read_retries=None)
        self.once = _session(token, statuses=(429,), read_retries=0)  # connection failures still retry: nothing sent

    def _request(self, method: str, path: str, json: dict | None = None, *, params: dict | None = None,
                 repeatable: bool) -> dict:
        url = path if path.startswith("http") else self.base_url + path.lstrip("/")
        session = self.repeatable if repeatable else self.once
        try:
            response = session.request(method, url, json=json, params=params, timeout=TIMEOUT_S)
        except requests.RequestException as exc:
            raise ProlificError(UNREACHABLE.format(error=type(exc).__name__)) from exc
        if response.status_code >= 400:
            raise _error(response)
        return response.json() if response.content else {}

    # ------------------------------------------------------------------------------------------ studies

    def study_create(self, **fields) -> dict:
        return self._request("POST", "studies/", fields, repeatable=False)

    def study_list(self) -> list[dict]:
        """Every study of the workspace (id, name, internal_name, status, ...)."""
        return self._request("GET", "studies/", repeatable=True).get("results", [])

    def study_get(self, study_id: str) -> dict:
        return self._request("GET", f"studies/{study_id}/", repeatable=True)

    def study_update(self, study_id: str, **fields) -> dict:
        return self._request("PATCH", f"studies/{study_id}/", fields, repeatable=True)

    def study_transition(self, study_id: str, action: str) -> dict:
        """action: PUBLISH, PAUSE, START (resume) or STOP. Not repeated after a 5xx: pausing a paused study is
        refused, so the caller reads the status again instead."""
        return self._request("POST", f"studies/{study_id}/transition/", {"action": action}, repeatable=False)

    # ------------------------------------------------------------------------------------------ submissions

    def submission_list(self, study_id: str, *, status: str | None = None) -> list[dict]:
        """The study's submissions (id = the SESSION_ID the participant arrived with, participant_id, status,
        study_code, ...), `status` one of the documented filters (AWAITING_REVIEW, APPROVED, ...). Follows the
        pages: the `_links.next` link where Prolific gives one (absolute or relative, on Prolific's host only),
        else the next page number while pages come back full."""
        params = {"study": study_id, "page_size": PAGE_SIZE, "page": 1}
        if status:
            params["status"] = status
        url, results = self.base_url + "submissions/", []
        for _ in range(MAX_PAGES):
            page = self._request("GET", url, params=params, repeatable=True)
            rows = page.get("results", [])
            results += rows
            next_link = ((page.get("_links") or {}).get("next") or {}).get("href")
            if next_link:
                url, params = self._same_host(urljoin(url, next_link)), None
            elif "_links" not in page and params and len(rows) == PAGE_SIZE:
                params = {**params, "page": params["page"] + 1}
            else:
                return results
        return results

    def _same_host(self, url: str) -> str:
        # The token goes with every request: never to a host other than the API's.
        if urlsplit(url)[:2] != urlsplit(self.base_url)[:2]:
            raise ProlificError(FOREIGN_NEXT.format(url=url))
        return url

    def submission_bulk_approve(self, submission_ids: list[str]) -> None:
        """Approve (and pay) up to BULK_APPROVE_MAX submissions in one request. Prolific approves them in the
        background and ignores one approved already, so a repeated request is harmless."""
        if len(submission_ids) > BULK_APPROVE_MAX:
            raise ValueError(f"at most {BULK_APPROVE_MAX} submissions per bulk approval")
        self._request("POST", "submissions/bulk-approve/", {"submission_ids": submission_ids}, repeatable=True)

    def submission_request_return(self, submission_id: str, reasons: list[str]) -> dict:
        """Asks the participant to return the submission (a researcher cannot return it; rejecting would penalise
        someone who did nothing wrong). Prolific marks this endpoint experimental; a repeat sends a second message,
        so it is not repeated after a 5xx."""
        return self._request("POST", f"submissions/{submission_id}/request-return/",
                             {"request_return_reasons": reasons}, repeatable=False)

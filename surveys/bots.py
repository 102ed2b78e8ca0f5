"""oTree-style participant bots that walk the real participant HTTP flow of a running server.

A bot enrolls, consents, fetches its trials, answers each one (POST with an idempotency key, retried with
backoff until the server confirms) and completes. Cases mix in what real crowdworkers do: drop out, reload
mid-way (re-enroll with the stored token and fetch again), double-post, go offline for a burst (answers
queue up, some acknowledgements are lost, then everything is retried), fail the catch trials, return the
study. Policies choose the answer:

* `random` — uniform over the options;
* `perceptual` — downloads the images over HTTP and picks the option with the smallest pixel distance to the
  query (what a pixel-matching observer sees; nothing from the server says which option is the target);
* `adversarial` — the option with the largest pixel distance;
* `target` — looks the right answer (its screen position for this session) up in the database. A TEST policy:
  it cheats on purpose.

Classification surveys (name the category of a briefly shown image) are walked practice, screening, main
trials; the options are the session's categories and every answer carries the timing a 60 Hz browser reports
(the image up for the survey's image_ms). There `random` clicks a category uniformly; `perceptual` names the
category of the nearest practice photo by pixel distance (it learns them from the practice feedback, which
names the right category; random until then); `adversarial` names any other category than that; `target`
names the true category from the database. The catch trials of a classification look like any other trial,
so a `fail_catch` bot clicks at random from the screening block on (and is usually screened out).

`bots_run(...)` returns the summary; lost and duplicated answers are counted against the database. A session
that fails the screening block counts as `screened_out`, not as an error.
"""
import io
import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import requests
from django.core import signing
from django.db import InterfaceError, OperationalError, connection
from PIL import Image

BOT_SALT = "surveys.bot"
POLICIES = ("perceptual", "random", "target", "adversarial")
BLOCKS = ("practice", "screening", "trials")  # the order a session is walked in (screening: classification only)
REFRESH_HZ = 60.0  # the display the bots pretend to have
CASES = ("attentive", "attentive", "attentive", "dropout", "reload", "double_post", "offline", "fail_catch", "returner")


def bot_credential(*, slug: str, rehearsal: bool = False) -> str:
    """A signed token that marks an enrollment as a bot's, or as a rehearsal's bot (`run_bots --as-people`), which
    the estimates count like a person (only code holding SECRET_KEY can make one)."""
    return signing.dumps({"slug": slug, "rehearsal": True} if rehearsal else {"slug": slug}, salt=BOT_SALT)


def bot_credential_kind(*, credential: str, slug: str) -> str:
    """"bot", "rehearsal", or "" for anything else (a person, a forged or another survey's credential)."""
    try:
        payload = signing.loads(credential, salt=BOT_SALT)
    except signing.BadSignature:
        return ""
    if not isinstance(payload, dict) or payload.get("slug") != slug:
        return ""
    return "rehearsal" if payload.get("rehearsal") else "bot"


@dataclass
class BotResult:
    case: str
    token: str = ""
    outcome: str = ""
    acked: dict = field(default_factory=dict)  # trial id -> idempotency key the server confirmed
    refused_as_expected: int = 0
    errors: list = field(default_factory=list)
    full: bool = False


class Bot:
    def __init__(self, *, base_url, slug, index, case, policy, pilot_key, credential, rng, think_s, target_lookup,
                 retries=12):
        self.base, self.slug, self.index, self.case, self.policy = base_url.rstrip("/"), slug, index, case, policy
        self.pilot_key, self.credential, self.rng, self.think_s = pilot_key, credential, rng, think_s
        self.target_lookup, self.retries = target_lookup, retries
        self.http = requests.Session()
        self.result = BotResult(case=case)
        self.images: dict[str, np.ndarray] = {}
        self.classification: dict | None = None  # the session's categories and durations (classification only)
        self.exemplars: list[tuple[np.ndarray, int]] = []  # practice photos and their right category
        self.started = time.monotonic()

    # -- HTTP with retries: network errors and 5xx are retried with backoff (15-30 s in all, long enough for
    # a database or web server restart; a 503's Retry-After is honoured); 4xx are answers
    def call(self, method, path, body=None, *, lose_ack=False):
        delay = 0.05
        for attempt in range(self.retries):
            wait = delay + self.rng.random() * delay
            try:
                r = self.http.request(method, self.base + path, json=body, timeout=30)
                if r.status_code < 500:
                    if lose_ack and attempt == 0:
                        lose_ack = False
                        raise requests.ConnectionError("acknowledgement lost (simulated)")
                    return r
                if r.headers.get("Retry-After", "").isdigit():
                    wait = max(wait, min(float(r.headers["Retry-After"]), 5.0))
            except requests.RequestException:
                pass
            time.sleep(wait)
            delay = min(delay * 2, 2.0)
        raise RuntimeError(f"{method} {path}: no answer after {self.retries} tries")

    def enroll(self, token=""):
        body = {"prolific_pid": f"bot-{self.credential[-8:]}-{self.index}", "bot": self.credential}
        if self.pilot_key:
            body["pilot"] = self.pilot_key
        if token:
            body["token"] = token
        return self.call("POST", f"/api/p/surveys/{self.slug}/enroll", body)

    def image(self, url) -> np.ndarray:
        if url not in self.images:
            data = self.call("GET", url).content
            self.images[url] = np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((32, 32)), dtype=np.float32)
        return self.images[url]

    def choose(self, trial) -> int:
        if self.classification:
            return self.category_choose(trial)
        n = len(trial["options"])
        if self.policy == "random":
            return self.rng.randrange(n)
        if self.policy == "target":
            return self.target_lookup(self.result.token, trial["id"])
        query = self.image(trial["query"])
        dist = [float(np.mean((self.image(u) - query) ** 2)) for u in trial["options"]]
        if self.case == "fail_catch" and min(dist) == 0.0:  # the query is one of the options: a catch trial
            return int(np.argmax(dist))
        return int(np.argmax(dist) if self.policy == "adversarial" else np.argmin(dist))

    def category_choose(self, trial) -> int:
        n = len(self.classification["categories"])
        careless = self.case == "fail_catch" and trial["block"] != "practice"
        if self.policy == "random" or careless:
            return self.rng.randrange(n)
        if self.policy == "target":
            return self.target_lookup(self.result.token, trial["id"])
        query = self.image(trial["query"])
        if not self.exemplars:  # nothing learnt yet: a guess
            guess = self.rng.randrange(n)
        else:
            guess = min(self.exemplars, key=lambda e: float(np.mean((e[0] - query) ** 2)))[1]
        return (guess + 1 + self.rng.randrange(n - 1)) % n if self.policy == "adversarial" else guess

    def timing(self, rt_ms: float) -> dict:
        """What the browser measures at 60 Hz: the image up for the whole frames nearest the survey's image_ms (as
        the page schedules it), so no answer is flagged mistimed; an image shown until answered was up for the RT."""
        frame_ms = 1000 / REFRESH_HZ
        image_ms = self.classification["image_ms"]
        frames = max(1, round((rt_ms if image_ms is None else image_ms) / frame_ms))
        onset = (time.monotonic() - self.started) * 1000 + self.classification["fixation_ms"]
        shown = frames * frame_ms
        return {"image_onset_ms": round(onset, 2), "image_offset_ms": round(onset + shown, 2),
                "shown_ms": round(shown, 2), "refresh_hz": REFRESH_HZ, "frames": frames}

    def answer(self, trial, *, lose_ack=False):
        """Post one answer; False when the walk ends here (the session ended, or this answer failed a block)."""
        key = str(uuid.uuid4())
        body = {"trial": trial["id"], "choice": self.choose(trial), "rt_ms": round(300 + self.rng.random() * 900, 1), "idempotency_key": key}
        if self.classification:
            body["timing"] = self.timing(body["rt_ms"])
        r = self.call("POST", f"/api/p/sessions/{self.result.token}/responses", body, lose_ack=lose_ack)
        if r.status_code in (200, 201):
            self.result.acked[trial["id"]] = key
        elif r.status_code == 409 and r.json().get("extra", {}).get("reason") == "ended":
            return False
        else:
            self.result.errors.append(f"answer {r.status_code}: {r.text[:120]}")
            return False
        if self.case == "double_post":
            again = self.call("POST", f"/api/p/sessions/{self.result.token}/responses", body)
            other = self.call("POST", f"/api/p/sessions/{self.result.token}/responses", {**body, "idempotency_key": str(uuid.uuid4())})
            if again.status_code == 200 and other.status_code == 409:
                self.result.refused_as_expected += 1
            else:
                self.result.errors.append(f"double post {again.status_code}/{other.status_code}")
        return self.answered(trial, r.json())

    def answered(self, trial, reply: dict) -> bool:
        """Learn from practice feedback; False once a block is failed (the server ended the session, so the
        bot goes straight to complete for its code, as the page does)."""
        correct = reply.get("feedback", {}).get("correct_choice")
        if correct is not None and trial["query"] in self.images:  # only the pixel policies fetched the photo
            self.exemplars.append((self.images[trial["query"]], correct))
        return not any(reply.get(block, {}).get("passed") is False for block in ("practice", "screening"))

    def run(self) -> BotResult:
        try:
            self._run()
        except Exception as exc:  # a bot reports, it never takes the run down
            self.result.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            if self.policy == "target":
                connection.close()  # this thread's own, opened by target_lookup
        return self.result

    def _run(self):
        r = self.enroll()
        if r.status_code == 409 and r.json().get("extra", {}).get("reason") == "full":
            self.result.full = True
            return
        if r.status_code not in (200, 201):
            self.result.errors.append(f"enroll {r.status_code}: {r.text[:120]}")
            return
        self.result.token = token = r.json()["token"]
        self.classification = r.json().get("classification")
        self.call("POST", f"/api/p/sessions/{token}/consent", {})
        todo = walk_order(self.call("GET", f"/api/p/sessions/{token}/trials").json())
        stop_at = self.rng.randrange(1, max(2, len(todo))) if self.case in ("dropout", "reload", "returner", "offline") else None
        offline_queue = []
        k = 0
        while k < len(todo):
            trial = todo[k]
            if self.think_s:
                time.sleep(self.think_s * (0.5 + self.rng.random()))
            if stop_at is not None and k == stop_at:
                if self.case == "dropout":
                    self.result.outcome = "dropped"
                    return
                if self.case == "returner":
                    self.result.outcome = self.call("POST", f"/api/p/sessions/{token}/return", {}).json()["outcome"]
                    return
                if self.case == "reload":  # a reload: enroll again with the stored token, fetch, skip what is done
                    again = self.enroll(token).json()
                    if again["token"] != token:
                        self.result.errors.append("reload got a different session")
                    fetched = self.call("GET", f"/api/p/sessions/{token}/trials").json()
                    todo = walk_order(fetched, done=set(fetched["done"]))
                    k, stop_at = 0, None
                    continue
                if self.case == "offline":  # a burst offline: the next answers wait in the outbox
                    offline_queue = todo[k : k + 3]
                    k += len(offline_queue)
                    stop_at = None
                    for i, t in enumerate(offline_queue):  # back online: flush, the first ack of each is lost
                        if not self.answer(t, lose_ack=(i % 2 == 0)):
                            return self._finish(token)
                    continue
            if not self.answer(trial):
                break
            k += 1
        self._finish(token)

    def _finish(self, token):
        done = self.call("POST", f"/api/p/sessions/{token}/complete", {})
        if done.status_code == 200:
            self.result.outcome = done.json()["outcome"]
        else:
            self.result.errors.append(f"complete {done.status_code}: {done.text[:120]}")


def walk_order(session: dict, *, done: set = frozenset()) -> list[dict]:
    """The session's unanswered entries in the order a page shows them, each tagged with its block."""
    return [dict(t, block=block) for block in BLOCKS for t in session.get(block, []) if t["id"] not in done]


def _with_database_retries(query, *, tries: int = 16):
    """Run a query from a bot's thread, riding out a database restart as the bots' HTTP calls do (backoff to 2 s,
    about 20 s in all): the restart tests restart PostgreSQL while the `target` policy is looking answers up."""
    delay = 0.05
    for attempt in range(tries):
        try:
            return query()
        except (OperationalError, InterfaceError):
            if attempt == tries - 1:
                raise
            connection.close()  # a broken connection is not reused
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def bots_run(*, base_url: str, slug: str, participants: int, concurrency: int, policy: str, live: bool = False,
             cases: tuple = CASES, think_s: float = 0.0, seed: int | None = None, as_people: bool = False) -> dict:
    """Run `participants` bots with `concurrency` threads against `base_url`; return the JSON-able summary.

    as_people: a rehearsal. The bots enroll with a rehearsal credential: their sessions are marked is_rehearsal,
    not is_bot, so adaptive collection's estimates (and the report) count them like people, and
    surveys.services.survey_rehearsal_erase deletes them in one action. Refusals and the audit entry are the
    command's (surveys.services.survey_rehearsal_start)."""
    from .models import Assignment, Participant, Response, Survey

    if policy not in POLICIES:
        raise ValueError(f"Unknown policy '{policy}'; choose one of {', '.join(POLICIES)}.")
    survey = Survey.objects.get(slug=slug)
    pilot_key = "" if live else survey.pilot_key
    credential = bot_credential(slug=slug, rehearsal=as_people) + "." + uuid.uuid4().hex[:8]
    targets: dict[str, dict[str, int]] = {}

    def target_lookup(token: str, public_id: str) -> int:
        """The `target` policy's cheat: the screen position of the target in this session's layout (a classification
        has no layout: its category's index), from the database (one query per session, in the bot's thread, whose
        connection is closed when the bot ends)."""
        if token not in targets:
            rows = _with_database_retries(lambda: list(Assignment.objects.filter(participant__token=token).values_list(
                "trial__public_id", "option_order", "trial__target_option")))
            targets[token] = {t: order.index(str(target)) if order else target for t, order, target in rows}
        return targets[token][public_id]
    master = random.Random(seed)
    bots = [
        Bot(base_url=base_url, slug=slug, index=i, case=cases[i % len(cases)], policy=policy, pilot_key=pilot_key,
            credential=credential, rng=random.Random(master.random()), think_s=think_s, target_lookup=target_lookup)
        for i in range(participants)
    ]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(lambda b: b.run(), bots))
    elapsed = time.monotonic() - started

    # The run may have outlived this process's database connection (PostgreSQL restarted meanwhile): reconnect.
    if connection.connection is not None and not connection.in_atomic_block and not connection.is_usable():
        connection.close()
    tokens = [r.token for r in results if r.token]
    stored = {}
    for token, trial, key in Response.objects.filter(participant__token__in=tokens).values_list(
        "participant__token", "trial__public_id", "idempotency_key"
    ):
        stored.setdefault((token, trial), []).append(str(key))
    acked = {(r.token, t): k for r in results for t, k in r.acked.items()}
    lost = sum(1 for pair in acked if pair not in stored)
    duplicates = sum(len(keys) - 1 for keys in stored.values()) + sum(
        1 for pair, key in acked.items() if pair in stored and key not in stored[pair]
    )
    if not as_people:  # the server marked them already; a rehearsal's sessions must stay counted like people
        Participant.objects.filter(token__in=tokens).update(is_bot=True)
    outcomes = [r.outcome for r in results]
    errors = [e for r in results for e in r.errors]
    return {
        "completed": outcomes.count("completed"),
        "responses": len(acked),
        "duplicates": duplicates,
        "lost": lost,
        "errors": len(errors),
        "failed_attention": outcomes.count("failed_attention"),
        "screened_out": outcomes.count("screened_out"),
        "dropped": outcomes.count("dropped"),
        "returned": outcomes.count("returned"),
        "timed_out": outcomes.count("timed_out"),
        "full": sum(r.full for r in results),
        "double_posts_refused": sum(r.refused_as_expected for r in results),
        "participants": participants,
        "mode": ("rehearsal" if as_people else "live") if live else "pilot",
        "policy": policy,
        "elapsed_s": round(elapsed, 2),
        "error_samples": errors[:5],
    }

#!/usr/bin/env python
"""The README's and the documentation's screenshots, made from a real demo: a participant's 2AFC trial and the
admin's alignment report.

    .venv/bin/python scripts/screenshots.py          # writes docs/img/participant-2afc.png and docs/img/report.png
    DEMO_STEPS=100 DEMO_IMAGE_SIZE=96 .venv/bin/python scripts/screenshots.py   # a quicker demo job

What it does, in order:
1. ``manage.py demo --no-serve`` (the demo's own preparation: admin user, the bundled photos, an IRI set made by a
   real Celery worker, the published 2AFC survey ``demo``) on a private SQLite database, media folder and broker
   under var/screenshots/, so the demo's var/db.sqlite3 is never touched; a second run reuses the finished IRI set;
2. ``manage.py runserver`` on a free port;
3. ``run_bots demo --as-people``: ten rehearsal bots (the perceptual policy) answer the survey so that the report has
   numbers; rehearsal sessions count like people (docs/researchers.md), so the report shows the bots' answers. Any
   rehearsal of an earlier run is erased first;
4. Debian's Chromium (/usr/bin/chromium, driven by Playwright; never a downloaded browser): the admin's report page,
   logged in as the demo's admin, then the survey's pilot link up to the first trial (a pilot session, which no
   report counts; the next run deletes it with the survey's other pilot data).
PNGs above 200 KB are reduced to a 256-colour palette.
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "var" / "screenshots"
OUT = ROOT / "docs" / "img"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
MAX_BYTES = 200_000
BOTS = 10  # the demo survey's N ratings per list (one list of its four trials): the list ends full


def environment() -> dict:
    WORK.mkdir(parents=True, exist_ok=True)
    password = os.environ.get("DEMO_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
    return {
        **os.environ,
        "DJANGO_DEBUG": "true",
        "DATABASE_URL": f"sqlite:///{WORK / 'db.sqlite3'}",
        "DJANGO_MEDIA_ROOT": str(WORK / "media"),
        "CELERY_BROKER_URL": "filesystem://localhost//",
        "CELERY_BROKER_DIR": str(WORK / "broker"),
        "DEMO_ADMIN_PASSWORD": password,
        "DJANGO_LOG_LEVEL": "WARNING",
    }


def manage(env: dict, *args: str) -> str:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"manage.py {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return done.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_start(env: dict, port: int) -> subprocess.Popen:
    server = subprocess.Popen([sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"], cwd=ROOT,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
            return server
        except OSError:
            time.sleep(0.5)
    server.terminate()
    sys.exit("the server did not answer /healthz within 60 s")


def shrink(path: Path) -> None:
    """Keep the PNG under MAX_BYTES: optimised, then (only if still too big) a 256-colour palette."""
    from PIL import Image

    image = Image.open(path).convert("RGB")
    image.save(path, optimize=True)
    if path.stat().st_size > MAX_BYTES:
        image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)


def shoot(base: str, *, pilot_key: str, survey_pk: int, user: str, password: str) -> list[Path]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        sys.exit(f"{CHROMIUM} is missing (Debian: apt-get install chromium)")
    OUT.mkdir(parents=True, exist_ok=True)
    participant, report = OUT / "participant-2afc.png", OUT / "report.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        # The report first: the pilot session below never reaches it.
        page = browser.new_page(viewport={"width": 1000, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(f"{base}/admin/login/?next=/admin/results/surveyreport/{survey_pk}/report/")
        page.fill("#id_username", user)
        page.fill("#id_password", password)
        page.click("input[type=submit]")
        page.wait_for_url(f"**/surveyreport/{survey_pk}/report/")
        if page.is_visible("#toggle-nav-sidebar"):  # the admin's app list, folded away (the page gets the width)
            page.click("#toggle-nav-sidebar")
        page.wait_for_function("[...document.images].every(img => img.complete)")
        page.screenshot(path=str(report))

        page = browser.new_page(viewport={"width": 1000, "height": 720})
        page.set_default_timeout(30_000)
        page.goto(f"{base}/s/demo/?pilot={pilot_key}")
        page.click("button#consent-agree")
        page.click("button#instructions-start")
        page.wait_for_selector('button[data-choice="0"]:not([disabled])')
        page.wait_for_function("[...document.images].every(img => img.complete && img.naturalWidth > 0)")
        box = page.locator(".afc").bounding_box()
        top = max(0, box["y"] - 40)
        page.screenshot(path=str(participant), clip={"x": 0, "y": top, "width": 1000, "height": box["height"] + 80})
        browser.close()
    for path in (participant, report):
        shrink(path)
    return [participant, report]


def main() -> None:
    env = environment()
    print("preparing the demo (manage.py demo --no-serve; the first run makes its IRIs)…", file=sys.stderr)
    summary = json.loads(manage(env, "demo", "--no-serve").strip().splitlines()[-1])
    # Earlier runs' pilot sessions (this script's own) go first, so that the report counts only this run's bots.
    found = manage(env, "shell", "-c", "from surveys.models import Survey; from surveys.services import "
                                       "survey_pilot_reset; s = Survey.objects.get(slug='demo'); "
                                       "survey_pilot_reset(survey=s); print(s.pk, s.pilot_key)"
                   ).strip().splitlines()[-1].split()
    survey_pk, pilot_key = int(found[0]), found[1]
    port = free_port()
    server = server_start(env, port)
    base = f"http://127.0.0.1:{port}"
    try:
        manage(env, "run_bots", "demo", "--erase-rehearsal")
        bots = json.loads(manage(env, "run_bots", "demo", "--as-people", "--participants", str(BOTS), "--concurrency",
                                 "2", "--policy", "perceptual", "--attentive-only", "--seed", "0",
                                 "--base-url", base).strip().splitlines()[-1])
        print(f"rehearsal bots: {bots.get('completed')} completed, {bots.get('responses')} answers", file=sys.stderr)
        paths = shoot(base, pilot_key=pilot_key, survey_pk=survey_pk, user=summary["admin_user"],
                      password=env["DEMO_ADMIN_PASSWORD"])
    finally:
        server.terminate()
        server.wait(timeout=30)
    for path in paths:
        print(f"{path.relative_to(ROOT)}: {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()

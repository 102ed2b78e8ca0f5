"""Load on the answer endpoint: gunicorn (README configuration) against PostgreSQL on loopback.

    python bench/survey_load.py --json            # full run (saturation 50/200/500, 1,000 participants, pgbench)
    python bench/survey_load.py --json --quick    # a small run that proves everything works

Phases: closed-loop saturation (no think time) at several connection counts; a realistic open-loop load of
simulated participants who think ~1.5 s (exponential) between answers; PostgreSQL's own single-row insert
rate by pgbench at 32 clients on the same table shape. After each phase the acknowledged answers are
checked against the table: lost (acknowledged, not stored), duplicated (more than one row per participant and
trial), errors (non-2xx or broken connections). The load generator is a small asyncio HTTP/1.1 client in this
process (gunicorn sync workers close each connection, so every request opens one): it shares the 2 cores.
Prints one JSON line.
"""
import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB_NAME = os.environ.get("BENCH_DB", "iri_bench")
DB_URL = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
PSQL = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-v", "ON_ERROR_STOP=1"]


def sh(args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw).stdout


def sql(query: str) -> str:
    # Through stdin: the counting queries carry thousands of keys, too long for a command line.
    return sh(PSQL + ["-d", DB_NAME, "-At", "-f", "-"], input=query).strip()


def setup_database(participants: int, trials: int) -> list[tuple[str, str]]:
    sh(PSQL + ["-d", "postgres", "-c", f"DROP DATABASE IF EXISTS {DB_NAME}"])
    sh(PSQL + ["-d", "postgres", "-c", f"CREATE DATABASE {DB_NAME}"])
    env = {**os.environ, "DATABASE_URL": DB_URL}
    sh([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env)
    # A synthetic live survey: `trials` 2AFC trials (no files are served), `participants` consented sessions
    # each assigned every trial, one slot each.
    sql(f"""
    INSERT INTO iri_worker_storedimage (sha256, file, width, height, created_at)
      SELECT md5(g::text) || md5((g+7)::text), 'img/x.png', 32, 32, now() FROM generate_series(1, 2) g;
    INSERT INTO surveys_survey (slug, title, task_type, foil_rule, cluster_variant, status, consent_md, instructions_md,
      ratings_per_list, catch_trials, practice_trials, practice_pass_fraction, catch_min_accuracy, rt_floor_ms,
      rt_floor_max_fraction, refill_excluded, time_limit_minutes, resume_policy, completion_code, code_failed_attention,
      code_timed_out, code_technical, pilot_key, rng_seed, created_at)
      VALUES ('bench', 'bench', '2afc', 'seed', 'random', 'LIVE', '', '', {participants}, 0, 0, 0.5, 0.75, 200, 0.25, true,
      600, 'resume', 'C', 'F', 'T', 'X', 'k', 0, now());
    INSERT INTO surveys_triallist (survey_id, index) SELECT id, 0 FROM surveys_survey;
    INSERT INTO surveys_trial (survey_id, trial_list_id, public_id, kind, task_type, screen, query_id, option_0_id,
      option_1_id, n_options, target_option, foil_kind)
      SELECT s.id, l.id, 't' || g, 'main', '2afc', '', i.id, i.id, i.id, 2, g % 2, 'seed'
      FROM surveys_survey s, surveys_triallist l, (SELECT min(id) id FROM iri_worker_storedimage) i, generate_series(1, {trials}) g;
    INSERT INTO surveys_participant (survey_id, trial_list_id, token, prolific_pid, study_id, session_id, worker_id,
      assignment_id, hit_id, turk_submit_to, is_pilot, is_bot, status, stage, consented_at, restarts, client_info,
      excluded, exclusion_reasons, created_at)
      SELECT s.id, l.id, 'p' || g, '', '', '', '', '', '', '', false, true, 'active', 'consented', now(), 0, '{{}}',
      false, '[]', now() FROM surveys_survey s, surveys_triallist l, generate_series(1, {participants}) g;
    INSERT INTO surveys_assignment (participant_id, trial_id, position)
      SELECT p.id, t.id, row_number() OVER (PARTITION BY p.id ORDER BY t.id) FROM surveys_participant p, surveys_trial t;
    INSERT INTO surveys_slot (survey_id, trial_list_id, is_pilot, ordinal, rank, participant_id, reserved_until)
      SELECT p.survey_id, p.trial_list_id, false, row_number() OVER (ORDER BY p.id) - 1, row_number() OVER (ORDER BY p.id) - 1,
      p.id, now() + interval '10 hours' FROM surveys_participant p;
    ANALYZE;
    """)
    pairs = [(f"p{p}", f"t{t}") for t in range(1, trials + 1) for p in range(1, participants + 1)]
    random.Random(0).shuffle(pairs)
    return pairs


def start_server(port: int, workers: int) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": DB_URL, "DJANGO_CONN_MAX_AGE": "60", "DJANGO_DEBUG": "false",
           "DJANGO_SECRET_KEY": "bench-" + uuid.uuid4().hex, "DJANGO_SECURE_SSL_REDIRECT": "false",
           # All simulated participants share one IP: keep the limits (their cost is measured) but out of reach.
           "RATE_LIMIT_ENROLL": "1000000000/min", "RATE_LIMIT_SESSION": "1000000000/min"}
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("gunicorn")), "backend.wsgi:application", "-b", f"127.0.0.1:{port}",
         "-w", str(workers), "--worker-class", "sync", "--backlog", "2048", "--access-logfile", "/dev/null"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            asyncio.run(post(port, "/api/p/sessions/x/consent", b"{}"))
            return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("gunicorn did not start")


async def post(port: int, path: str, body: bytes) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"Connection: close\r\n\r\n".encode() + body
    )
    await writer.drain()
    status_line = await reader.readline()
    await reader.read()
    writer.close()
    return int(status_line.split()[1])


class Phase:
    def __init__(self, port, pairs):
        self.port, self.pairs = port, pairs
        self.latencies, self.acked, self.errors, self.sent = [], [], 0, 0

    async def answer(self):
        if not self.pairs:
            return
        token, trial = self.pairs.pop()
        key = str(uuid.uuid4())
        body = json.dumps({"trial": trial, "choice": 1, "rt_ms": 612.5, "idempotency_key": key}).encode()
        self.sent += 1
        t0 = time.perf_counter()
        try:
            status = await post(self.port, f"/api/p/sessions/{token}/responses", body)
        except OSError:
            self.errors += 1
            return
        self.latencies.append(time.perf_counter() - t0)
        if status == 201:
            self.acked.append(key)
        else:
            self.errors += 1

    async def closed_loop(self, connections, seconds):
        end = time.monotonic() + seconds

        async def client():
            while time.monotonic() < end and self.pairs:
                await self.answer()

        await asyncio.gather(*(client() for _ in range(connections)))
        return seconds

    async def open_loop(self, participants, seconds, think_s):
        end = time.monotonic() + seconds
        rng = random.Random(1)
        tasks = set()

        async def participant():
            await asyncio.sleep(rng.random() * think_s)
            while time.monotonic() < end:
                tasks.add(asyncio.ensure_future(self.answer()))  # open loop: the next answer does not wait for this one
                await asyncio.sleep(rng.expovariate(1 / think_s))

        await asyncio.gather(*(participant() for _ in range(participants)))
        if tasks:
            await asyncio.wait(tasks, timeout=30)  # let answers in flight finish
        return seconds

    def figures(self, seconds):
        lat = sorted(self.latencies)
        pct = lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 1) if lat else None  # noqa: E731
        stored = int(sql("SELECT count(*) FROM surveys_response WHERE idempotency_key = ANY(ARRAY[%s]::uuid[])" % ",".join(
            f"'{k}'" for k in self.acked))) if self.acked else 0
        duplicated = int(sql("SELECT count(*) FROM (SELECT 1 FROM surveys_response GROUP BY participant_id, trial_id HAVING count(*) > 1) d"))
        return {"answers_per_s": round(len(self.acked) / seconds, 1), "p50_ms": pct(0.5), "p99_ms": pct(0.99),
                "acknowledged": len(self.acked), "lost": len(self.acked) - stored, "duplicated": duplicated, "errors": self.errors}


def pgbench(seconds: int, clients: int) -> float:
    sql("""DROP TABLE IF EXISTS bench_response; CREATE TABLE bench_response (id bigserial PRIMARY KEY,
        participant_id bigint NOT NULL, trial_id bigint NOT NULL, choice smallint NOT NULL, rt_ms double precision NOT NULL,
        idempotency_key uuid NOT NULL UNIQUE, created_at timestamptz NOT NULL, UNIQUE (participant_id, trial_id));
        CREATE INDEX ON bench_response (trial_id);""")
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write("\\set p random(1, 2000000000)\n\\set t random(1, 2000000000)\n"
                "INSERT INTO bench_response (participant_id, trial_id, choice, rt_ms, idempotency_key, created_at) "
                "VALUES (:p, :t, 1, 612.5, gen_random_uuid(), now()) ON CONFLICT DO NOTHING;\n")
    out = sh(["pgbench", "-h", "127.0.0.1", "-U", "postgres", "-n", "-c", str(clients), "-j", "2", "-T", str(seconds), "-f", f.name, DB_NAME])
    os.unlink(f.name)
    tps = [line for line in out.splitlines() if line.startswith("tps")][0]
    return round(float(tps.split("=")[1].split()[0]), 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON line (the default output anyway)")
    parser.add_argument("--quick", action="store_true", help="small and short: proves the benchmark works")
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    if args.quick:
        conns, seconds, people, realistic_s, participants, trials = (20, 50), 3, 100, 5, 200, 60
    else:
        conns, seconds, people, realistic_s, participants, trials = (50, 200, 500), 20, 1000, 30, 1000, 200
    pairs = setup_database(participants, trials)
    port = 8765 + random.randrange(1000)
    server = start_server(port, args.workers)
    result = {"workers": args.workers, "worker_class": "sync", "quick": args.quick, "saturation": {}}
    try:
        for c in conns:
            phase = Phase(port, pairs)
            result["saturation"][str(c)] = phase.figures(asyncio.run(phase.closed_loop(c, seconds)))
        phase = Phase(port, pairs)
        result["realistic"] = {"participants": people, "think_s": 1.5, "offered_per_s": round(people / 1.5, 1),
                               **phase.figures(asyncio.run(phase.open_loop(people, realistic_s, 1.5)))}
    finally:
        server.terminate()
        server.wait(timeout=30)
    result["pgbench_tps_32"] = pgbench(seconds, 32)
    key = "200" if "200" in result["saturation"] else max(result["saturation"], key=int)
    result["ratio_answers_per_pgbench"] = round(result["saturation"][key]["answers_per_s"] / result["pgbench_tps_32"], 3)
    result["ratio_at_connections"] = int(key)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

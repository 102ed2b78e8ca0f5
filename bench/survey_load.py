"""Load on the answer endpoint: gunicorn (gunicorn.conf.py, the README configuration) against PostgreSQL on loopback.

    python bench/survey_load.py --json            # full run (saturation 50/200/500, 1,000 participants, pgbench)
    python bench/survey_load.py --json --quick    # a small run that proves everything works

Phases:
- saturation: closed-loop clients with no think time at 50, 200 and 500 connections, driven by `wrk` (C, about
  30 µs of CPU per request, so the 2 cores stay with the server) with bench/survey_answers.lua, which sends a
  prepared list of distinct real answers (participant token, trial, idempotency key). Without wrk (Debian
  package `wrk`) the benchmark says so on stderr and drives the phase from Python instead.
- realistic: 1,000 simulated participants who think ~1.5 s (exponential) between answers, open loop (a
  participant's next answer does not wait for the previous reply), so about 650 answers/s offered. A plain
  Python epoll loop sends each answer when it is due; latency counts from the moment an answer was due, not
  when it was sent (so a late generator counts against the server, never for it; its own lag is reported).
- the floor: PostgreSQL's own single-row insert rate on the same table shape, by pgbench at 32 clients.

After each phase the answers are counted in the database: lost (acknowledged, not stored), duplicated (more than
one row per participant and trial), errors (non-2xx, broken connections, timeouts). The Python generator knows
the key of every acknowledged answer; wrk counts replies per status without knowing which request a reply
belongs to, so with wrk `lost` = acknowledged − stored among the keys sent, and `stored_unacknowledged` the
answers still in flight when wrk stopped (stored, reply never read). Each phase also reports the CPU time per
answer of gunicorn, PostgreSQL's backends and the load generator, and how busy the machine was with other work.
Prints one JSON line.
"""
import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import secrets
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.survey_load_db import (  # noqa: E402
    DB_NAME, DB_URL, duplicated_count, pgbench, setup_database, sh, sql, stored_count,
)
WRK_SCRIPT = ROOT / "bench" / "survey_answers.lua"
WRK_MAX_RATE = 6000  # answers/s a saturation phase gets keys for (far above what 2 cores reach)
THINK_S = 1.5


def start_server(port: int, workers: int | None = None) -> subprocess.Popen:
    """gunicorn as gunicorn.conf.py sets it up (sync workers, 4 per core, backlog, CONN_MAX_AGE), on `port`."""
    env = {**os.environ, "DATABASE_URL": DB_URL, "DJANGO_DEBUG": "false",
           "DJANGO_SECRET_KEY": secrets.token_urlsafe(50), "DJANGO_SECURE_SSL_REDIRECT": "false",
           # All simulated participants share one IP: keep the limits (their cost is measured) but out of reach.
           "RATE_LIMIT_ENROLL": "1000000000/min", "RATE_LIMIT_SESSION": "1000000000/min"}
    env.pop("DJANGO_CONN_MAX_AGE", None)  # the configuration's own value
    command = [str(Path(sys.executable).with_name("gunicorn")), "-c", str(ROOT / "gunicorn.conf.py"),
               "backend.wsgi:application", "-b", f"127.0.0.1:{port}"]
    if workers:
        command += ["-w", str(workers)]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            asyncio.run(post(port, "/api/p/sessions/x/consent", b"{}"))
            return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("gunicorn did not start")


def answer_body(trial: str, key: str) -> bytes:
    return b'{"trial":"%s","choice":1,"rt_ms":612.5,"idempotency_key":"%s"}' % (trial.encode(), key.encode())


def answer_request(token: str, trial: str, key: str) -> bytes:
    body = answer_body(trial, key)
    return (b"POST /api/p/sessions/%s/responses HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (token.encode(), len(body), body))


async def post(port: int, path: str, body: bytes) -> int:
    """One POST on a fresh connection (gunicorn's sync workers close each one); returns the status."""
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


class _Exchange(asyncio.Protocol):
    """One request on a fresh connection with plain protocol callbacks (no streams): the cheapest asyncio client."""

    def __init__(self, request: bytes, done: asyncio.Future):
        self.request, self.done, self.head = request, done, b""

    def connection_made(self, transport):
        transport.write(self.request)

    def data_received(self, data):
        if len(self.head) < 16:
            self.head += data

    def connection_lost(self, exc):
        if not self.done.done():
            status = self.head[9:12]
            self.done.set_result(int(status) if exc is None and status.isdigit() else 0)


class CpuMeter:
    """CPU seconds over a phase of gunicorn's processes, the benchmark database's backends, and this process with
    its children (wrk), and how busy the whole machine was. Per process, so a database connection that gunicorn
    replaced during the phase (CONN_MAX_AGE) counts from its start; one that ended is left out (a small undercount)."""

    def __init__(self, server: subprocess.Popen):
        self.server = server

    @staticmethod
    def _ticks(pids) -> dict[int, float]:
        ticks = {}
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                ticks[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except (FileNotFoundError, ProcessLookupError, IndexError):
                pass
        return ticks

    def _sample(self):
        workers = [int(p) for p in subprocess.run(["pgrep", "-P", str(self.server.pid)], capture_output=True, text=True).stdout.split()]
        backends = [int(p) for p in sql(f"SELECT pid FROM pg_stat_activity WHERE datname = '{DB_NAME}' AND pid <> pg_backend_pid()").split()]
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        hz = os.sysconf("SC_CLK_TCK")
        return {"gunicorn": self._ticks(workers + [self.server.pid]), "postgres": self._ticks(backends),
                "load_generator": own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime,
                "machine_busy": (sum(cpu) - cpu[3] - cpu[4]) / hz, "machine_all": sum(cpu) / hz}

    def __enter__(self):
        self.start = self._sample()
        return self

    def __exit__(self, *exc):
        self.end = self._sample()

    def figures(self, answers: int) -> dict:
        d = {}
        for k, end in self.end.items():
            if isinstance(end, dict):
                d[k] = sum(max(0.0, t - self.start[k].get(pid, 0.0)) for pid, t in end.items())
            else:
                d[k] = max(0.0, end - self.start[k])
        ours = d["gunicorn"] + d["postgres"] + d["load_generator"]
        other = max(0.0, d["machine_busy"] - ours) / max(1e-9, d["machine_all"])
        per = {k: round(d[k] / max(1, answers) * 1e6) for k in ("gunicorn", "postgres", "load_generator")}
        return {"cpu_us_per_answer": per, "other_work_pct": round(100 * other, 1)}


class Phase:
    """One phase driven from Python: closed loop (saturation fallback) or open loop (realistic load)."""

    def __init__(self, port, pairs):
        self.port, self.pairs = port, pairs
        self.latencies, self.acked, self.errors, self.sent = [], [], 0, 0
        self.send_lag_p99_ms = None

    async def answer(self, token=None, trial=None, due=None):
        if token is None:
            if not self.pairs:
                return
            token, trial = self.pairs.pop()
        key = str(uuid.uuid4())
        self.sent += 1
        loop = asyncio.get_running_loop()
        t0 = due if due is not None else loop.time()
        done = loop.create_future()
        try:
            await loop.create_connection(lambda: _Exchange(answer_request(token, trial, key), done), "127.0.0.1", self.port)
            status = await done
        except OSError:
            self.errors += 1
            return
        self.latencies.append(loop.time() - t0)
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
        """Each participant answers its own trials at exponential think-time intervals, whatever the replies do.
        The schedule is fixed up front; a plain epoll loop (no task or transport objects per request) sends each
        answer when it is due, so the generator costs little CPU and latency counts from the due time."""
        rng = random.Random(1)
        per_token: dict[str, list[str]] = {}
        for token, trial in self.pairs:
            per_token.setdefault(token, []).append(trial)
        schedule = []
        for token in sorted(per_token)[:participants]:
            t = rng.random() * think_s
            for trial in per_token[token]:
                if t >= seconds:
                    break
                schedule.append((t, token, trial))
                t += rng.expovariate(1 / think_s)
        schedule.sort()
        await asyncio.to_thread(self._send_on_schedule, schedule)
        return seconds

    def _send_on_schedule(self, schedule, straggler_s=30.0):
        poller = selectors.DefaultSelector()
        address = ("127.0.0.1", self.port)
        start = time.monotonic() + 0.2
        lags, pending, i = [], 0, 0
        while i < len(schedule) or pending:
            now = time.monotonic()
            while i < len(schedule) and start + schedule[i][0] <= now:
                due, token, trial = schedule[i]
                key = str(uuid.uuid4())
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                sock.connect_ex(address)
                poller.register(sock, selectors.EVENT_WRITE, [start + due, answer_request(token, trial, key), key, b""])
                lags.append(now - start - due)
                self.sent += 1
                pending += 1
                i += 1
            if i < len(schedule):
                wait = start + schedule[i][0] - now
            elif now < start + schedule[-1][0] + straggler_s:
                wait = 0.5
            else:
                break  # stragglers: counted as errors below
            for selected, mask in poller.select(max(0.0, wait)):
                sock, state = selected.fileobj, selected.data
                try:
                    if mask & selectors.EVENT_WRITE:
                        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                            raise OSError("connect failed")
                        sock.sendall(state[1])  # a few hundred bytes: fits the socket buffer
                        poller.modify(sock, selectors.EVENT_READ, state)
                        continue
                    data = sock.recv(65536)
                    if data:
                        state[3] = (state[3] + data)[:16]
                        continue
                    status = state[3][9:12]
                    self.latencies.append(time.monotonic() - state[0])
                    if status == b"201":
                        self.acked.append(state[2])
                    else:
                        self.errors += 1
                except OSError:
                    self.errors += 1
                poller.unregister(sock)
                sock.close()
                pending -= 1
        self.errors += pending
        lags.sort()
        self.send_lag_p99_ms = round(lags[int(0.99 * len(lags))] * 1000, 1) if lags else None

    def figures(self, seconds):
        lat = sorted(self.latencies)
        pct = lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 1) if lat else None  # noqa: E731
        stored = stored_count(self.acked)
        return {"answers_per_s": round(len(self.acked) / seconds, 1), "p50_ms": pct(0.5), "p99_ms": pct(0.99),
                "acknowledged": len(self.acked), "lost": len(self.acked) - stored, "duplicated": duplicated_count(), "errors": self.errors}


def wrk_phase(port: int, pairs: list, connections: int, seconds: int, threads: int = 2, meter=None, share: int | None = None) -> dict:
    """A closed-loop phase driven by wrk: `connections` clients, no think time, each request a distinct answer
    (at most `share` of the remaining pairs). `meter` (a CpuMeter) measures wrk's run, not the key preparation."""
    lines = [pairs.pop() + (str(uuid.uuid4()),) for _ in range(min(len(pairs), share or len(pairs), seconds * WRK_MAX_RATE))]
    if len(lines) < threads:
        raise SystemExit("survey_load: no answers left for a wrk phase (make the synthetic survey larger).")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("".join(f"{token} {trial} {key}\n" for token, trial, key in lines))
    try:
        with meter or contextlib.nullcontext():
            out = sh(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s",
                      "-s", str(WRK_SCRIPT), f"http://127.0.0.1:{port}", "--", f.name, str(threads)])
    finally:
        os.unlink(f.name)
    report = json.loads(next(line for line in out.splitlines() if line.startswith("WRK_JSON "))[len("WRK_JSON "):])
    threads_ = report["threads"]
    sent_keys = [key for k, t in enumerate(threads_) for _, _, key in lines[k::threads][: t["sent"]]]
    created = sum(t["created"] for t in threads_)
    stored = stored_count(sent_keys)
    duration = report["duration_us"] / 1e6
    return {"answers_per_s": round(created / duration, 1), "p50_ms": round(report["p50_us"] / 1000, 1),
            "p99_ms": round(report["p99_us"] / 1000, 1), "acknowledged": created, "lost": max(0, created - stored),
            "stored_unacknowledged": max(0, stored - created), "duplicated": duplicated_count(),
            "errors": sum(t["refused"] for t in threads_) + report["socket_errors"] + report["timeouts"],
            "keys_exhausted": any(t["exhausted"] for t in threads_)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON line (the default output anyway)")
    parser.add_argument("--quick", action="store_true", help="small and short: proves the benchmark works")
    parser.add_argument("--workers", type=int, default=None, help="gunicorn workers (default: gunicorn.conf.py's, 4 per core)")
    parser.add_argument("--generator", choices=["auto", "wrk", "python"], default="auto",
                        help="saturation load generator (auto: wrk when installed)")
    args = parser.parse_args()
    if args.quick:
        conns, seconds, people, realistic_s, participants, trials, reserved = (20, 50), 3, 100, 5, 200, 150, 12
    else:
        conns, seconds, people, realistic_s, participants, trials, reserved = (50, 200, 500), 20, 1000, 30, 1000, 300, 60
    generator = args.generator
    if generator == "auto":
        generator = "wrk" if shutil.which("wrk") else "python"
        if generator == "python":
            print("survey_load: wrk is not installed (Debian: apt-get install wrk); the saturation phases use the Python "
                  "generator, which takes CPU from the server, so answers/s come out lower.", file=sys.stderr)
    elif generator == "wrk" and not shutil.which("wrk"):
        raise SystemExit("survey_load: --generator wrk, but wrk is not installed (Debian: apt-get install wrk).")
    pairs = setup_database(participants, trials)
    # The realistic phase gets the first `reserved` trials of each participant; saturation the rest, shuffled.
    realistic_pairs = sorted((p for p in pairs if int(p[1][1:]) <= reserved), key=lambda p: (int(p[0][1:]), int(p[1][1:])))
    pairs = [p for p in pairs if int(p[1][1:]) > reserved]
    port = 8765 + random.randrange(1000)
    server = start_server(port, args.workers)
    meter = CpuMeter(server)
    result = {"workers": args.workers or "gunicorn.conf.py", "worker_class": "sync", "quick": args.quick,
              "load_generator": {"saturation": generator, "realistic": "python-epoll-open-loop"}, "saturation": {}}
    try:
        # Warm-up (not measured): every worker imports its lazy modules, opens its database connection and
        # prepares the answer statement, as in a server that has been up for a while.
        warm = [pairs.pop() for _ in range(min(len(pairs) // 20, 2000))]
        if generator == "wrk":
            wrk_phase(port, warm, 50, 2)
        else:
            asyncio.run(Phase(port, warm).closed_loop(50, 2))
        share = len(pairs) // len(conns)
        for c in conns:
            if generator == "wrk":
                figures = wrk_phase(port, pairs, c, seconds, meter=meter, share=share)
            else:
                phase = Phase(port, pairs)
                with meter:
                    elapsed = asyncio.run(phase.closed_loop(c, seconds))
                figures = phase.figures(elapsed)
            result["saturation"][str(c)] = {**figures, **meter.figures(figures["acknowledged"])}
        phase = Phase(port, realistic_pairs)
        with meter:
            elapsed = asyncio.run(phase.open_loop(people, realistic_s, THINK_S))
        figures = phase.figures(elapsed)
        result["realistic"] = {"participants": people, "think_s": THINK_S, "offered_per_s": round(people / THINK_S, 1),
                               "sent": phase.sent, **figures, "generator_send_lag_p99_ms": phase.send_lag_p99_ms,
                               **meter.figures(figures["acknowledged"])}
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

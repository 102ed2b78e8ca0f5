#!/usr/bin/env bash
# Run one benchmark and save its JSON for the documentation's benchmark page (docs/benchmarks/index.md):
#   scripts/bench_save.sh [--as NAME] bench/BENCH.py --json [the benchmark's flags]
# writes docs/benchmarks/NAME.json (NAME defaults to BENCH; --as engine-cuda keeps a second kind of run apart):
#   {"benchmark", "saved_as", "command", "date", "commit", "dirty", "host": {cpu_model, cpus, gpu}, "result"}
# where "result" is the benchmark's JSON line. The benchmark's output still reaches the terminal; a failing
# benchmark saves nothing. Run benchmarks alone on the machine. PYTHON overrides .venv/bin/python.
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: scripts/bench_save.sh [--as NAME] bench/BENCH.py --json [flags]"
name=""
if [ "${1:-}" = "--as" ]; then
    name=${2:?$usage}
    shift 2
fi
script=${1:?$usage}
shift
case "$script" in
    bench/*.py) [ -f "$script" ] || { echo "no such benchmark: $script" >&2; exit 2; } ;;
    *) echo "$usage" >&2; exit 2 ;;
esac
case "$name" in
    *[!a-z0-9_-]*) echo "--as NAME: lower-case letters, digits, - and _ only" >&2; exit 2 ;;
esac
python=${PYTHON:-.venv/bin/python}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

"$python" "$script" "$@" | tee "$out"

"$python" - "$out" "$script" "${name:-$(basename "$script" .py)}" "$@" <<'PY'
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys

out, script, name, *flags = sys.argv[1:]
result = None
for line in reversed(open(out).read().splitlines()):
    try:
        value = json.loads(line)
    except ValueError:
        continue
    if isinstance(value, dict):
        result = value
        break
if result is None:
    sys.exit(f"bench_save: {script} printed no JSON line (pass --json); nothing saved")


def git(*args):
    return subprocess.run(["git", *args], capture_output=True, text=True).stdout.strip()


cpu_model = None
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
except OSError:
    pass
gpu = None
if shutil.which("nvidia-smi"):
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                         text=True).stdout.strip().replace("\n", ", ") or None
saved = {
    "benchmark": result.get("benchmark") or os.path.splitext(os.path.basename(script))[0],
    "saved_as": name,
    "command": shlex.join(["python", script, *flags]),
    "date": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
    "commit": git("rev-parse", "HEAD"),
    "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    "host": {"cpu_model": cpu_model, "cpus": os.cpu_count(), "gpu": gpu},
    "result": result,
}
path = os.path.join("docs", "benchmarks", f"{name}.json")
with open(path, "w") as fh:
    json.dump(saved, fh, indent=1, ensure_ascii=False)
    fh.write("\n")
print(f"bench_save: saved {path}", file=sys.stderr)
PY

"""The allocator set-up a worker makes: freed tensors' memory is reused by the next step, not faulted in anew."""

import json
import subprocess
import sys

import pytest

from iri_worker.engine import keep_freed_memory

# One "step" as the loop makes them: a 64 MB activation allocated, written and freed; minor page faults counted
# over 20 such steps after ten warm-up steps (the heap's one-off growth), in a fresh process (glibc's settings
# are per process).
STEPS = """
import json, resource, sys, torch
from iri_worker.engine import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "kept" else False
def step():
    torch.empty(16 * 2**20).fill_(1.0)
for _ in range(10):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(json.dumps({"kept": kept, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def faults_over_twenty_steps(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", STEPS, mode], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
@pytest.mark.slow
def test_with_freed_memory_kept_each_step_reuses_the_last_ones_pages():
    default, kept = faults_over_twenty_steps("default"), faults_over_twenty_steps("kept")
    assert kept["kept"] is True and default["kept"] is False
    # glibc's default maps and unmaps the 64 MB every step: about 16,000 page faults each time
    assert default["faults"] > 20 * 8_000
    assert kept["faults"] < default["faults"] / 20


def test_keeping_freed_memory_is_idempotent():
    assert keep_freed_memory() is keep_freed_memory()


"""The engine is pure torch and stats pure numpy/scipy: importing them loads no Django.

Which modules they may import is the import contracts' business (pyproject.toml, tests/test_layers.py); this checks
at run time what the contracts cannot see: that nothing they import pulls Django in behind their back."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("module", [
    "iri_worker.engine", "stats.alignment", "stats.exclusions", "stats.agreement", "stats.ceiling", "stats.recognition",
    "stats.adaptive.interval", "stats.adaptive.stopping", "stats.adaptive.blocks", "stats.adaptive.forecast",
    "stats.adaptive.planner",
])
def test_importing_a_pure_module_loads_no_django_module(module):
    code = (f"import sys, {module}; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'rest_framework', 'celery')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

"""The engine is pure torch and stats.alignment pure numpy: neither may import Django or a sibling app."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = ("django", "rest_framework", "celery", "backend", "surveys", "results", "teams", "iri_worker.models", "iri_worker.services")


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module or "")
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "iri_worker" / "engine").rglob("*.py")) + sorted((ROOT / "stats").rglob("*.py")), ids=str)
def test_pure_modules_import_nothing_of_django_or_the_apps(path):
    bad = {name for name in imported_modules(path) if name.split(".")[0] in FORBIDDEN or name in FORBIDDEN}
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_importing_the_engine_loads_no_django_module():
    code = "import sys, iri_worker.engine; print(sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'rest_framework')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

"""The import contracts of pyproject.toml ([tool.importlinter], drawn in docs/architecture.md) hold: stats and the
engine are pure, backend's kernel imports no app, and the apps form layers whose only exceptions are the listed
issue-22 debt. lint-imports reads every import, those inside functions too."""
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The lint-imports console script, run by this interpreter wherever its scripts live (venv, image, CI).
LINT_IMPORTS = [sys.executable, "-c",
                "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"]
ROOT_PACKAGES = ("kernel", "backend", "teams", "operations", "iri_worker", "surveys", "results", "stats")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    # --no-cache: no .import_linter_cache left in the checkout (a full run takes well under a second anyway)
    return subprocess.run([*LINT_IMPORTS, "--no-cache", "--no-logo"], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_the_import_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def copy_of_the_packages(target: Path) -> Path:
    for package in ROOT_PACKAGES:
        shutil.copytree(ROOT / package, target / package, ignore=shutil.ignore_patterns("__pycache__", "templates"))
    shutil.copy(ROOT / "pyproject.toml", target / "pyproject.toml")
    return target


def test_a_new_lazy_import_against_the_layers_or_the_purity_fails(tmp_path):
    """The contracts are a ratchet: an import inside a function counts, in a module the debt list does not name."""
    root = copy_of_the_packages(tmp_path)
    with (root / "surveys" / "selectors.py").open("a") as module:
        module.write("\n\ndef _planted():\n    from results.exports import answers_csv  # noqa: F401\n")
    with (root / "stats" / "alignment.py").open("a") as module:
        module.write("\n\ndef _planted():\n    from django.db import connection  # noqa: F401\n")
    result = lint_imports(root)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "surveys.selectors -> results.exports" in result.stdout
    assert "stats.alignment -> django" in result.stdout


def test_a_paid_debt_must_leave_the_list(tmp_path):
    """An ignored import that does not exist is an error, so the debt list shrinks as the edges go."""
    root = copy_of_the_packages(tmp_path)
    config = root / "pyproject.toml"
    text = config.read_text()
    assert "ignore_imports = [\n" in text
    planted = 'ignore_imports = [\n    "surveys.apis -> results.models",\n'  # an edge that does not exist
    config.write_text(text.replace("ignore_imports = [\n", planted, 1))
    result = lint_imports(root)
    assert result.returncode != 0
    assert "No matches for ignored import surveys.apis -> results.models" in result.stdout + result.stderr

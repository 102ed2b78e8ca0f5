"""The import contracts of pyproject.toml ([tool.importlinter], drawn in docs/architecture.md) hold: stats and the
engine are pure, backend's kernel imports no app, the apps form layers with no exception, and no two modules of
teams, operations or results import each other round a loop. lint-imports reads every import, those inside
functions too."""
import shutil
import subprocess
import sys
import tomllib
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
    """The contracts are a ratchet: an import inside a function counts like any other."""
    root = copy_of_the_packages(tmp_path)
    with (root / "surveys" / "selectors.py").open("a") as module:
        module.write("\n\ndef _planted():\n    from results.export_answers import answers_csv  # noqa: F401\n")
    with (root / "stats" / "alignment.py").open("a") as module:
        module.write("\n\ndef _planted():\n    from django.db import connection  # noqa: F401\n")
    result = lint_imports(root)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "surveys.selectors -> results.export_answers" in result.stdout
    assert "stats.alignment -> django" in result.stdout


def layers_contract(config: dict) -> dict:
    contracts = config["tool"]["importlinter"]["contracts"]
    return next(c for c in contracts if c["type"] == "layers")


def test_the_layers_have_no_exception_and_their_order_is_the_documented_one():
    contract = layers_contract(tomllib.loads((ROOT / "pyproject.toml").read_text()))

    assert contract["layers"] == ["results", "surveys", "iri_worker", "operations", "teams"]
    assert "ignore_imports" not in contract, "an edge upwards is moved to its layer, not ignored"
    assert "results > surveys > iri_worker > operations > teams" in (ROOT / "docs" / "architecture.md").read_text()


def test_an_ignored_import_that_does_not_exist_is_an_error(tmp_path):
    """Were an exception ever added, it could not outlive its edge: an ignore that matches no import fails."""
    root = copy_of_the_packages(tmp_path)
    config = root / "pyproject.toml"
    text = config.read_text()
    layers = 'layers = ["results", "surveys", "iri_worker", "operations", "teams"]\n'
    assert layers in text
    planted = layers + 'ignore_imports = ["surveys.apis -> results.models"]\n'  # an edge that does not exist
    config.write_text(text.replace(layers, planted, 1))
    result = lint_imports(root)
    assert result.returncode != 0
    assert "No matches for ignored import surveys.apis -> results.models" in result.stdout + result.stderr


def test_an_import_loop_inside_an_app_fails(tmp_path):
    """results' services read through its selectors: a selector that imports the services closes a loop."""
    root = copy_of_the_packages(tmp_path)
    with (root / "results" / "selectors.py").open("a") as module:
        module.write("\n\ndef _planted():\n    from .services import alignment_report  # noqa: F401\n")
    result = lint_imports(root)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "No cycles are allowed in results" in result.stdout

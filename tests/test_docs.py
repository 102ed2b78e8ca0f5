"""The README is a front door whose links all lead somewhere, the documentation site builds with --strict, and the
benchmark page's tables come from saved JSON (the fixtures under tests/docs_fixtures/ are synthetic: invented
numbers in the benchmarks' shapes, never measurements)."""
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "docs_fixtures"
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def hook(name: str):
    """A MkDocs hook module from docs/hooks/, imported on its own (it needs only the standard library)."""
    spec = importlib.util.spec_from_file_location(f"docs_hook_{name}", ROOT / "docs" / "hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_page_turns_saved_runs_into_tables():
    benchmarks = hook("benchmarks")
    page = (FIXTURES / "page.md").read_text()

    rendered = benchmarks.blocks_fill(page, benchmarks.runs_load(FIXTURES / "runs"))

    assert rendered == (FIXTURES / "page.expected.md").read_text()


def test_a_benchmark_without_a_saved_run_says_so_and_a_figure_the_json_lacks_is_a_dash():
    benchmarks = hook("benchmarks")
    page = "before\n<!-- bench: archive -->\nwhat GitHub shows\n<!-- /bench -->\nafter\n"

    assert benchmarks.blocks_fill(page, []) == (
        "before\n*No saved run yet.* Save one with `scripts/bench_save.sh bench/archive.py --json` "
        "(alone on the machine).\nafter\n")
    run = {"benchmark": "archive", "command": "python bench/archive.py --json", "result": {"archive_s": 24.8}}
    table = benchmarks.render("archive", [("archive.json", run)])
    assert "| archive s | 24.8 |" in table and "| report alone s | — |" in table


def test_the_benchmark_page_has_a_block_for_every_benchmark_in_bench():
    page = (ROOT / "docs" / "benchmarks" / "index.md").read_text()
    blocks = set(re.findall(r"<!-- bench: ([a-z0-9_-]+) -->", page))

    # a benchmark is a script (bench/engine_loops.py and the like are modules the scripts import)
    scripts = {path.stem for path in (ROOT / "bench").glob("*.py") if '__name__ == "__main__"' in path.read_text()}
    assert blocks == scripts
    assert blocks <= set(hook("benchmarks").SECTIONS)


def test_an_included_file_keeps_its_links_working_from_the_including_page():
    includes = hook("includes")
    text = "[a](docs/results.md#x) ![b](docs/img/report.png) [c](https://example.org) [d](bench/engine.py)"

    assert includes.links_rebase(text, included="README.md", page="index.md") == (
        "[a](results.md#x) ![b](img/report.png) [c](https://example.org) [d](bench/engine.py)")
    assert includes.links_rebase("[e](docs/methods.md)", included="README.md", page="tutorials/x.md") == (
        "[e](../methods.md)")


def test_the_readme_is_short_and_every_relative_link_in_it_exists():
    readme = (ROOT / "README.md").read_text()

    assert len(readme.splitlines()) <= 200
    targets = [t.split("#")[0] for t in LINK.findall(readme) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]
    assert targets, "the README links its documentation"
    missing = [t for t in targets if t and not (ROOT / t).exists()]
    assert missing == []
    # The site shows the README as its home page: every page it links must be inside docs/.
    assert all(t.startswith("docs/") for t in targets if t)


def test_the_screenshots_the_readme_shows_are_small_pngs():
    readme = (ROOT / "README.md").read_text()
    images = [t for t in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", readme)]

    assert {"docs/img/participant-2afc.png", "docs/img/report.png"} <= set(images)
    for image in images:
        data = (ROOT / image).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) < 200_000, image


def test_the_documentation_site_builds_with_strict(tmp_path):
    mkdocs = Path(sys.executable).parent / "mkdocs"
    if not mkdocs.exists():
        pytest.skip("mkdocs is not installed: make install")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr[-3000:]
    home = (tmp_path / "site" / "index.html").read_text()
    assert 'href="tutorials/reproduce.html"' in home and 'src="img/report.png"' in home  # the README, links rebased
    assert "POST /api/p/sessions/&lt;token&gt;/responses" in (tmp_path / "site" / "participant-api.html").read_text()
    benchmarks = (tmp_path / "site" / "benchmarks" / "index.html").read_text()
    saved = [path.name for path in (ROOT / "docs" / "benchmarks").glob("*.json")]
    assert all(name in benchmarks for name in saved) and (saved or "No saved run yet" in benchmarks)


def test_bench_save_wraps_a_benchmark_json_line_with_where_and_when_it_ran(tmp_path):
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts", ignore=shutil.ignore_patterns("*.py"))
    (tmp_path / "bench").mkdir()
    (tmp_path / "docs" / "benchmarks").mkdir(parents=True)
    (tmp_path / "bench" / "toy.py").write_text(
        "import json, sys\nprint('warming up')\nprint(json.dumps({'benchmark': 'toy', 'rate': 1.5, 'argv': sys.argv[1:]}))\n")
    for args in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "toy"]):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)
    env = {**os.environ, "PYTHON": sys.executable}

    done = subprocess.run(["scripts/bench_save.sh", "--as", "toy-b", "bench/toy.py", "--json", "--quick"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert '"rate": 1.5' in done.stdout  # the benchmark's own output still reaches the terminal
    saved = json.loads((tmp_path / "docs" / "benchmarks" / "toy-b.json").read_text())
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    assert saved["benchmark"] == "toy" and saved["saved_as"] == "toy-b"
    assert saved["command"] == "python bench/toy.py --json --quick"
    assert saved["commit"] == head and saved["dirty"] is False
    assert saved["result"] == {"benchmark": "toy", "rate": 1.5, "argv": ["--json", "--quick"]}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", saved["date"])
    assert set(saved["host"]) == {"cpu_model", "cpus", "gpu"}

    # A benchmark that prints no JSON (no --json) saves nothing.
    (tmp_path / "bench" / "plain.py").write_text("print('a readable summary')\n")
    done = subprocess.run(["scripts/bench_save.sh", "bench/plain.py"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0 and "no JSON line" in done.stderr
    assert not (tmp_path / "docs" / "benchmarks" / "plain.json").exists()

"""What the image gets: `COPY . .` takes the build context less what .dockerignore names, and that must hold no
secret, no local state, nothing built for the host and no test output, while keeping everything the image runs on.

The context is computed with the Docker SDK's implementation of Docker's rules (`docker.utils.build.exclude_paths`,
the code docker-compose 1.x builds its context with): Go's filepath.Match per path element, `**` for any number of
directories, patterns anchored at the context root, a leading / ignored, the last matching line winning, and `!`
taking a path back. pathspec's gitignore style is not Docker's (there `node_modules` matches at any depth).
"""
import subprocess
from pathlib import Path, PurePosixPath

import pytest
from docker.utils.build import exclude_paths

ROOT = Path(__file__).resolve().parent.parent
DOCKERIGNORE = ROOT / ".dockerignore"

# Paths that can lie in a working tree and must never reach the image: secrets (the image gets its variables from
# compose), local state, what the image installs or builds for itself, version control and test output.
FORBIDDEN_EXAMPLES = [
    ".env", ".env.local", ".env.production", ".envrc", "frontend/.env", "backend/.env",
    "var/db.sqlite3", "var/media/img/ab/photo.png", "var/broker/control/x", "var/static/admin/base.css",
    ".venv/bin/python", ".venv/.installed", "venv/bin/python",
    "node_modules/jspsych/index.js", "frontend/node_modules/jspsych/index.js", "frontend/node_modules/.installed",
    "frontend/dist/participant.js", "frontend/dist/participant.js.map",
    "backend/__pycache__/settings.cpython-311.pyc", "surveys/models.pyc",
    ".git/HEAD", ".git/config",
    ".pytest_cache/v/cache/lastfailed", ".hypothesis/examples/0/1", ".ruff_cache/CACHEDIR.TAG", ".coverage",
    "htmlcov/index.html", "test-results/trace.zip", "frontend/test-results/shot.png",
    "playwright-report/index.html", "frontend/playwright-report/index.html",
]
FORBIDDEN_NAMES = {".venv", "venv", ".git", "node_modules", "__pycache__", ".pytest_cache", ".hypothesis",
                   ".ruff_cache", "htmlcov", "test-results", "playwright-report", ".coverage"}

# What the image runs on (besides every other tracked file).
NEEDED = ["manage.py", "gunicorn.conf.py", "requirements.txt", "backend/settings.py", "backend/wsgi.py",
          "backend/celery.py", "frontend/package.json", "frontend/package-lock.json", "frontend/build.mjs"]


def forbidden(path: str) -> bool:
    parts = PurePosixPath(path).parts
    name = parts[-1]
    return (
        bool(FORBIDDEN_NAMES & set(parts))
        or parts[0] == "var"
        or parts[:2] == ("frontend", "dist")
        or (name.startswith(".env") and path != ".env.example")
        or name.endswith(".pyc")
    )


def dockerignore_patterns(text: str) -> list[str]:
    """The patterns as Docker reads the file: a # in column 1 starts a comment, lines are trimmed, blank ones
    skipped, and after a ! the pattern is trimmed again (the SDK then cleans each path and drops a leading /)."""
    patterns = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        line = line.strip()
        if line.startswith("!"):
            line = "!" + line[1:].strip()
        if line:
            patterns.append(line)
    return patterns


def image_files(root: Path) -> set[str]:
    """The files `COPY . .` would take from `root`, with the repository's .dockerignore."""
    text = DOCKERIGNORE.read_text() if DOCKERIGNORE.exists() else ""
    return {path for path in exclude_paths(str(root), dockerignore_patterns(text)) if not (root / path).is_dir()}


def tracked_files() -> list[str]:
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [path for path in listing.split("\0") if path and (ROOT / path).is_file()]


@pytest.fixture(params=["the working tree", "a tree holding everything that may lie beside the code"])
def tree(request, tmp_path) -> Path:
    """The repository as it is here, or its tracked files plus every kind of untracked file named above."""
    if request.param == "the working tree":
        return ROOT
    for path in tracked_files() + FORBIDDEN_EXAMPLES:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x")
    return tmp_path


def test_every_forbidden_example_is_one_the_check_recognises():
    assert all(forbidden(path) for path in FORBIDDEN_EXAMPLES)
    assert not any(forbidden(path) for path in NEEDED + [".env.example", "frontend/src/main.js", "docs/compose.md"])


def test_the_image_gets_no_secret_local_state_host_build_or_test_output(tree):
    leaked = sorted(path for path in image_files(tree) if forbidden(path))

    assert not leaked, f"COPY . . would put these into the image: {leaked[:20]}"


def test_the_image_gets_every_tracked_file(tree):
    files = image_files(tree)

    assert set(NEEDED) <= files
    assert any(path.startswith("frontend/src/") for path in files)
    missing = sorted(set(tracked_files()) - files)
    assert not missing, f".dockerignore keeps these project files out of the image: {missing}"


def test_the_rules_use_only_what_docker_and_the_sdk_read_alike():
    """The SDK lower-cases names and patterns before matching and reads [!a] as a negated class; Docker on Linux
    is case-sensitive and negates with [^a]. Lower-case patterns without classes or escapes mean the same to both."""
    patterns = dockerignore_patterns(DOCKERIGNORE.read_text())

    assert patterns
    for pattern in patterns:
        assert pattern == pattern.lower() and "[" not in pattern and "\\" not in pattern, pattern

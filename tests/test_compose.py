"""The docker-compose stack: the services docs/compose.md promises, from one image, valid files (also without a
GPU), every variable of .env.example passed on to the containers, and secrets that `make env` makes."""
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from backend.secret_checks import secret_weakness
from tests.backend.test_secret_checks import settings_start

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
MAIN = ("docker-compose.yml",)
CPU_ONLY = ("docker-compose.yml", "docker-compose.cpu.yml")
APP_SERVICES = ("migrate", "web", "worker-gpu", "worker-cpu", "beat")


def test_the_stack_has_postgres_redis_web_and_two_kinds_of_worker():
    assert {"db", "redis", "web", "worker-gpu", "worker-cpu", "migrate"} <= set(COMPOSE["services"])
    assert COMPOSE["services"]["db"]["image"].startswith("postgres")
    assert COMPOSE["services"]["redis"]["image"].startswith("redis")


def test_the_gpu_worker_takes_one_job_at_a_time_from_the_gpu_queue_on_a_reserved_device():
    gpu = COMPOSE["services"]["worker-gpu"]
    command = " ".join(gpu["command"])
    assert "-Q gpu" in command and "-c 1" in command
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]


def test_web_and_workers_run_from_the_same_image():
    images = {COMPOSE["services"][name]["image"] for name in ("web", "worker-gpu", "worker-cpu", "migrate")}
    assert images == {"iri-platform:latest"}


SECRETS = ("DJANGO_SECRET_KEY", "POSTGRES_PASSWORD")


def env_example_text() -> str:
    return (ROOT / ".env.example").read_text()


def env_example_names() -> set[str]:
    """Every variable .env.example lists, set or commented out."""
    return set(re.findall(r"^#?\s*([A-Z0-9_]+)=", env_example_text(), re.MULTILINE))


def env_values(text: str) -> dict[str, str]:
    """The variables a .env sets (lines not commented out)."""
    return dict(re.findall(r"^([A-Z0-9_]+)=(.*)$", text, re.MULTILINE))


def compose_config(tmp_path, *, files=MAIN, env_file=None, quiet=True, **variables) -> subprocess.CompletedProcess:
    """`compose config` on the files with only these variables set: env_file (default: an empty one) as the .env,
    nothing that .env.example lists inherited from this process."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        command = ["docker", "compose"]
    elif shutil.which("docker-compose"):
        command = ["docker-compose"]
    else:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    if env_file is None:
        env_file = tmp_path / "empty.env"
        env_file.write_text("")
    ours = env_example_names() | set(SECRETS) | {"COMPOSE_FILE", "COMPOSE_PROFILES"}
    env = {k: v for k, v in os.environ.items() if k not in ours} | variables
    for name in files:
        command += ["-f", str(ROOT / name)]
    command += ["--env-file", str(env_file), "config"] + (["-q"] if quiet else [])
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)


@pytest.mark.parametrize("files", [MAIN, CPU_ONLY], ids=["main", "cpu-only"])
def test_docker_compose_accepts_the_files(tmp_path, files):
    run = compose_config(tmp_path, files=files, DJANGO_SECRET_KEY="a-long-random-string", POSTGRES_PASSWORD="another")
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("files", [MAIN, CPU_ONLY], ids=["main", "cpu-only"])
@pytest.mark.parametrize("missing", SECRETS)
def test_the_stack_refuses_to_start_without_its_secrets(tmp_path, missing, files):
    given = {name: "set" for name in SECRETS if name != missing}

    run = compose_config(tmp_path, files=files, **given)

    assert run.returncode != 0 and f"set {missing} in .env" in run.stderr


def queues(service: dict) -> set[str]:
    command = service.get("command") or []
    return set(command[command.index("-Q") + 1].split(",")) if "-Q" in command else set()


def test_without_a_gpu_no_service_reserves_one_and_a_cpu_worker_takes_the_iri_jobs(tmp_path):
    run = compose_config(tmp_path, files=CPU_ONLY, quiet=False, DJANGO_SECRET_KEY="k", POSTGRES_PASSWORD="p")
    assert run.returncode == 0, run.stderr
    services = yaml.safe_load(run.stdout)["services"]
    # `up` starts the services without a profile; worker-gpu gets one that nothing names.
    started = {name: service for name, service in services.items() if not service.get("profiles")}

    assert {"db", "redis", "migrate", "web", "worker-cpu", "beat"} <= set(started) and "worker-gpu" not in started
    assert not [name for name, service in started.items() if "devices" in str(service.get("deploy"))]
    assert {"gpu", "celery"} <= set().union(*map(queues, started.values()))


def test_the_main_file_starts_the_gpu_worker_by_default():
    assert not COMPOSE["services"]["worker-gpu"].get("profiles")
    assert queues(COMPOSE["services"]["worker-gpu"]) == {"gpu"}
    assert queues(COMPOSE["services"]["worker-cpu"]) == {"celery"}


# Variables of .env.example that compose does not pass on as they are. It builds these from its own services:
BUILT_BY_COMPOSE = {"DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL", "DJANGO_MEDIA_ROOT"}
# uses these itself (the database's password, the device the GPU worker sees):
USED_BY_COMPOSE = {"POSTGRES_PASSWORD": "db", "CUDA_VISIBLE_DEVICES": "worker-gpu"}
# and these mean nothing in the stack: the embedded broker's folder, the static files the image collects when it is
# built, the address gunicorn listens on outside compose (the web service binds 0.0.0.0:8000), and `make demo`'s.
OUTSIDE_COMPOSE = {"CELERY_BROKER_DIR", "DJANGO_STATIC_ROOT", "GUNICORN_BIND", "DEMO_STEPS", "DEMO_IMAGE_SIZE",
                   "DEMO_ADMIN_PASSWORD"}


def test_every_variable_of_env_example_reaches_the_containers_through_compose(tmp_path):
    names = env_example_names()
    assert BUILT_BY_COMPOSE | set(USED_BY_COMPOSE) | OUTSIDE_COMPOSE <= names, "a name above is no longer listed"
    marked = tmp_path / "marked.env"
    marked.write_text("".join(f"{name}=from-env-{name}\n" for name in sorted(names)))

    run = compose_config(tmp_path, env_file=marked, quiet=False)

    assert run.returncode == 0, run.stderr
    services = yaml.safe_load(run.stdout)["services"]
    passed_on = names - BUILT_BY_COMPOSE - set(USED_BY_COMPOSE) - OUTSIDE_COMPOSE
    for name in APP_SERVICES:
        environment = services[name]["environment"]
        missing = sorted(var for var in passed_on if environment.get(var) != f"from-env-{var}")
        assert not missing, f"{name} does not get {missing} from .env: add them to x-app's environment"
        assert BUILT_BY_COMPOSE <= set(environment)
        assert "from-env-POSTGRES_PASSWORD@db" in environment["DATABASE_URL"]
    assert services["db"]["environment"]["POSTGRES_PASSWORD"] == "from-env-POSTGRES_PASSWORD"
    assert services["worker-gpu"]["environment"]["CUDA_VISIBLE_DEVICES"] == "from-env-CUDA_VISIBLE_DEVICES"


def test_compose_passes_on_only_variables_that_env_example_lists():
    for name in APP_SERVICES:
        unlisted = set(COMPOSE["services"][name]["environment"]) - env_example_names()
        assert not unlisted, f"{name} gets {sorted(unlisted)}, which .env.example does not list"


def test_env_example_has_debug_off_empty_secrets_and_the_command_that_fills_them():
    values = env_values(env_example_text())

    assert values["DJANGO_DEBUG"] == "false"
    assert values["DJANGO_SECRET_KEY"] == "" and values["POSTGRES_PASSWORD"] == ""
    assert re.search(r"^#\s+make env\b", env_example_text(), re.MULTILINE)
    # DEBUG off turns the HTTPS redirect on; the local stack answers on http://localhost:8000.
    assert values["DJANGO_SECURE_SSL_REDIRECT"] == "false"


def make_env(target: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / "scripts" / "make_env.sh"), str(target)], capture_output=True, text=True)


def test_make_env_writes_a_private_env_whose_new_secrets_the_stack_and_the_settings_accept(tmp_path):
    target = tmp_path / ".env"

    run = make_env(target)

    assert run.returncode == 0, run.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    values = env_values(target.read_text())
    key, password = values["DJANGO_SECRET_KEY"], values["POSTGRES_PASSWORD"]
    assert secret_weakness(key, min_length=50) is None and secret_weakness(password, min_length=16) is None
    assert re.fullmatch(r"[A-Za-z0-9_-]+", password), "the password goes into DATABASE_URL as it is"
    secret_lines = ("DJANGO_SECRET_KEY=", "POSTGRES_PASSWORD=")
    assert [line for line in target.read_text().splitlines() if not line.startswith(secret_lines)] == [
        line for line in env_example_text().splitlines() if not line.startswith(secret_lines)
    ]

    assert compose_config(tmp_path, env_file=target).returncode == 0
    started = settings_start(DJANGO_DEBUG=values["DJANGO_DEBUG"], DJANGO_SECRET_KEY=key,
                             DATABASE_URL=f"postgres://iri:{password}@db:5432/iri")
    assert started.returncode == 0, started.stderr

    make_env(tmp_path / "second.env")
    assert env_values((tmp_path / "second.env").read_text())["DJANGO_SECRET_KEY"] != key


def test_make_env_never_overwrites_an_env(tmp_path):
    target = tmp_path / ".env"
    target.write_text("DJANGO_SECRET_KEY=mine\n")

    run = make_env(target)

    assert run.returncode != 0 and "exists" in run.stderr
    assert target.read_text() == "DJANGO_SECRET_KEY=mine\n"
    assert [path.name for path in tmp_path.iterdir()] == [".env"]


def test_web_workers_and_beat_have_health_checks():
    for name in ("db", "redis", "web", "worker-gpu", "worker-cpu", "beat"):
        assert COMPOSE["services"][name]["healthcheck"]["test"], name


@pytest.mark.parametrize("allowed_hosts", ["iri.example.org,localhost", ".example.org", "*", "localhost,127.0.0.1"])
def test_the_web_health_check_passes_whatever_names_the_site_serves(tmp_path, allowed_hosts):
    """The check runs inside the web container against gunicorn there; here against gunicorn on a free port."""
    from tests.backend.test_secret_checks import GOOD_KEY
    from tests.conftest import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env |= {"DJANGO_DEBUG": "false", "DJANGO_SECRET_KEY": GOOD_KEY, "DJANGO_ALLOWED_HOSTS": allowed_hosts,
            "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3", "DJANGO_SECURE_SSL_REDIRECT": "true"}
    gunicorn = Path(sys.executable).with_name("gunicorn")
    server = subprocess.Popen([str(gunicorn), "backend.wsgi:application", "-b", f"127.0.0.1:{port}", "-w", "1"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kind, *command = COMPOSE["services"]["web"]["healthcheck"]["test"]
    assert kind == "CMD" and command[0] == "python"
    command = [sys.executable, *(part.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for part in command[1:])]
    try:
        deadline = time.monotonic() + 60
        while True:
            check = subprocess.run(command, env=env, capture_output=True, text=True)
            if check.returncode == 0 or "Connection refused" not in check.stderr or time.monotonic() > deadline:
                break
            time.sleep(0.3)
    finally:
        server.terminate()
        server.wait(timeout=20)

    assert check.returncode == 0, check.stderr[-1000:]

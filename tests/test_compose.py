"""The docker-compose stack: the services the README promises, from one image, and a valid file."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


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


def compose_config(tmp_path, **variables) -> subprocess.CompletedProcess:
    """`compose config -q` on the file, with only these variables set (an empty .env beside it, none inherited)."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        command = ["docker", "compose"]
    elif shutil.which("docker-compose"):
        command = ["docker-compose"]
    else:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    (tmp_path / "empty.env").write_text("")
    env = {k: v for k, v in os.environ.items() if k not in SECRETS} | variables
    command += ["-f", str(ROOT / "docker-compose.yml"), "--env-file", str(tmp_path / "empty.env"), "config", "-q"]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)


def test_docker_compose_accepts_the_file(tmp_path):
    run = compose_config(tmp_path, DJANGO_SECRET_KEY="a-long-random-string", POSTGRES_PASSWORD="another")
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("missing", SECRETS)
def test_the_stack_refuses_to_start_without_its_secrets(tmp_path, missing):
    given = {name: "set" for name in SECRETS if name != missing}

    run = compose_config(tmp_path, **given)

    assert run.returncode != 0 and f"set {missing} in .env" in run.stderr


def test_web_workers_and_beat_have_health_checks():
    for name in ("db", "redis", "web", "worker-gpu", "worker-cpu", "beat"):
        assert COMPOSE["services"][name]["healthcheck"]["test"], name

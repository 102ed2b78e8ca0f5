"""The docker-compose stack: the services the README promises, from one image, and a valid file."""
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


def test_docker_compose_accepts_the_file():
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        command = ["docker", "compose", "config", "-q"]
    elif shutil.which("docker-compose"):
        command = ["docker-compose", "config", "-q"]
    else:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr

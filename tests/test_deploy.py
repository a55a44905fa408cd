"""docker-compose.yml is valid and wires every service (no Docker engine needed for `config`)."""

from __future__ import annotations

import os
import shutil
import subprocess

import yaml

from worker.settings import PROJECT_DIR

COMPOSE = PROJECT_DIR / "docker-compose.yml"


def compose_config(env: dict) -> subprocess.CompletedProcess:
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is missing: ./dev test installs Debian's docker-compose"
    return subprocess.run(
        [exe, "-f", str(COMPOSE), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}, **env},
    )


def test_compose_is_valid_and_complete():
    proc = compose_config({"NEWSLETTER_SECRET_KEY": "k" * 40, "NEWSLETTER_STAFF_TOKEN": "t" * 20})
    assert proc.returncode == 0, proc.stderr
    config = yaml.safe_load(proc.stdout)
    services = config["services"]
    assert {"redis", "postgres", "worker", "beat", "web", "mailpit", "flower"} <= set(services)
    for name in ("redis", "postgres", "worker", "web", "mailpit"):
        assert "healthcheck" in services[name], name
    env = services["worker"]["environment"]
    assert env["NEWSLETTER_BROKER_URL"] == "redis://redis:6379/0"
    assert env["NEWSLETTER_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert env["NEWSLETTER_MAIL_URL"].startswith("smtp://mailpit:1025")
    assert services["worker"]["command"][:4] == ["celery", "-A", "worker", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "worker", "beat"]
    assert (PROJECT_DIR / "Dockerfile").exists()


def test_compose_refuses_to_start_without_secrets():
    proc = compose_config({})
    assert proc.returncode != 0 and "NEWSLETTER_SECRET_KEY" in proc.stderr

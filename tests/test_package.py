"""The package on its own: a wheel installed outside the repo renders and runs the demo;
templates ship inside it and NEWSLETTER_TEMPLATES_DIR overrides them."""

from __future__ import annotations

import email
import email.policy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from worker.settings import PACKAGE_DIR, PROJECT_DIR

from .factories import cli, sample_episode_path


def _clean_env(**extra: str) -> dict:
    """The environment of a user who has set nothing: no NEWSLETTER_*, no PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_") and k != "PYTHONPATH"}
    return {**env, **extra}


def _subject(eml: Path) -> str:
    return email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)["Subject"]


def test_templates_dir_overrides_the_packaged_templates(tmp_path):
    mine = tmp_path / "templates"
    shutil.copytree(PACKAGE_DIR / "templates", mine)
    (mine / "email" / "digest" / "subject.txt").write_text("Custom: {{ subject }}\n")
    cli(
        "render",
        sample_episode_path(),
        "--out",
        tmp_path / "out",
        env={"NEWSLETTER_TEMPLATES_DIR": str(mine)},
        check=True,
    )
    assert _subject(tmp_path / "out" / "message.eml").startswith("Custom: ")


def test_a_missing_template_is_one_line(tmp_path):
    mine = tmp_path / "templates"
    shutil.copytree(PACKAGE_DIR / "templates", mine)
    (mine / "email" / "digest" / "body.html").unlink()
    proc = cli("render", sample_episode_path(), "--out", tmp_path / "out", env={"NEWSLETTER_TEMPLATES_DIR": str(mine)})
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr == (
        f"error: template digest/body.html not found in {mine / 'email'} (NEWSLETTER_TEMPLATES_DIR)\n"
    )
    assert not (tmp_path / "out" / "message.eml").exists()


def _source_tree(dest: Path) -> Path:
    """What `git archive` would hold for the package: the build must not write into the repo."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(PROJECT_DIR / name, dest / name)
    shutil.copytree(PROJECT_DIR / "worker", dest / "worker", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


@pytest.mark.integration  # pip, the package index
@pytest.mark.timeout(600)
def test_the_wheel_renders_and_runs_the_demo_outside_the_repo(tmp_path):
    # Build the wheel, install it into a fresh virtualenv (no system site-packages, no editable
    # path to this checkout), run it from a folder that has nothing else in it.
    src = _source_tree(tmp_path / "src")
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist, src],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = dist.glob("newsletter_worker-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=120)
    python = venv / "bin" / "python"
    # Dependencies come from whatever index pip is configured with (the registry in CI).
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "-q", wheel],
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    site = Path(
        subprocess.run(
            [python, "-c", "import worker, pathlib; print(pathlib.Path(worker.__file__).parent)"],
            capture_output=True,
            text=True,
            check=True,
            cwd=tmp_path,
        ).stdout.strip()
    )
    assert site.is_relative_to(venv) and (site / "templates" / "email" / "digest" / "body.html").is_file()

    run = tmp_path / "run"
    run.mkdir()
    newsletter = venv / "bin" / "newsletter"
    proc = subprocess.run(
        [newsletter, "render", site / "config" / "sample-episode.txt", "--out", "out", "--to", "reader@example.org"],
        capture_output=True,
        text=True,
        cwd=run,
        env=_clean_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in (run / "out").iterdir()} >= {"body.html", "body.txt", "message.eml"}
    assert "Episode 3" in _subject(run / "out" / "message.eml")

    proc = subprocess.run([newsletter, "demo"], capture_output=True, text=True, cwd=run, env=_clean_env(), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Relative paths of an installed package are taken from where it runs, never site-packages.
    sent = list((run / "var" / "outbox" / "new").iterdir())
    assert len(sent) == len((site / "config" / "subscribers.csv").read_text().strip().splitlines()) - 1
    assert not (site / "var").exists() and not (site.parent / "var").exists()

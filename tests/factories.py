"""Shared builders for tests: the `newsletter` command, subscribers, episodes, campaigns.

Tests import from here, never from each other. Everything works on the settings of the running
test (conftest's `settings_env`), so call them inside a test or a fixture.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .conftest import SEED


def cli(
    *args,
    env: dict | None = None,
    input: str | None = None,
    check: bool = False,
    cwd: Path | str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess:
    """Run `newsletter ARGS…` as a user does: a real process with this test's environment
    (plus `env`), text output captured. `check`: assert exit code 0, showing stderr if not."""
    proc = subprocess.run(
        [sys.executable, "-m", "worker.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        input=input,
        timeout=timeout,
        cwd=cwd,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def sample_episode_path() -> Path:
    """The sample episode (page layout) under tests/fixtures/episodes/."""
    return SEED

"""Shared builders for tests: the `newsletter` command, episodes, subscribers, campaigns.

Tests import from here (and fixtures from conftest), never from each other. Everything works on
the settings of the running test (conftest's `settings_env`), so call these inside a test or a
fixture; those that touch the database need the `database` fixture.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import date, datetime
from pathlib import Path

from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from worker.db import session_scope
from worker.episodes import Episode, Event, Speaker, load_episode
from worker.settings import get_settings
from worker.subscribers import ImportReport, import_rows

from .conftest import SEED
from .stack import wait_for


def cli(
    *args,
    env: dict | None = None,
    input: str | bytes | None = None,
    check: bool = False,
    cwd: Path | str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess:
    """Run `newsletter ARGS…` as a user does: a real process with this test's environment
    (plus `env`), output captured as text. `check`: assert exit code 0, showing stderr if not."""
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


# -- episodes ------------------------------------------------------------------------------


def sample_episode_path() -> Path:
    """The sample episode (page layout) under tests/fixtures/episodes/."""
    return SEED


def sample_episode() -> Episode:
    """The sample episode, read in the list's time zone."""
    return load_episode(SEED, get_settings().tz)


def episode(**overrides) -> Episode:
    """A small valid episode; keyword arguments replace any field of `Episode`."""
    base = dict(
        title="Episode 9: Tests",
        date=date(2024, 3, 1),
        slug="episode-9",
        guid="urn:ep:9",
        intro=("An intro.",),
        transcript=("A transcript paragraph with enough words in it to count.",),
    )
    return Episode(**{**base, **overrides})


def event(**overrides) -> Event:
    """An evening event in the list's time zone; keyword arguments replace any field."""
    tz = get_settings().tz
    base = dict(
        title="Spring Social",
        starts=datetime(2024, 3, 20, 18, 0, tzinfo=tz),
        ends=datetime(2024, 3, 20, 21, 30, tzinfo=tz),
        venue="The Pub, London",
        signup_url="https://tickets.example.com/s",
        speakers=(Speaker("Grace Hopper", "Admiral"),),
        description=("Drinks and talks.",),
    )
    return Event(**{**base, **overrides})


# -- sending without a worker ---------------------------------------------------------------

# The staff token the `live` fixture (conftest) serves the web app with.
BROWSER_STAFF_TOKEN = "browser-staff-token"


def deliver(episode_path: Path) -> int:
    """Publish the episode and send the whole campaign in this process (no broker, no worker)
    through the configured transport; returns the campaign id."""
    from worker.publish import publish_episode
    from worker.sending import Sender

    settings = get_settings()
    result = publish_episode(load_episode(episode_path, settings.tz), settings, enqueue=False)
    Sender(settings).run(result.campaign.id)
    return result.campaign.id


def inbox(outbox: Path) -> dict[str, list]:
    """The messages of a Maildir outbox by their Delivered-To address."""
    import mailbox

    box: dict[str, list] = {}
    for m in mailbox.Maildir(str(outbox), create=False):
        box.setdefault(m["Delivered-To"], []).append(m)
    return box


# -- colours -------------------------------------------------------------------------------


def _luminance(hex_colour: str) -> float:
    rgb = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a: str, b: str) -> float:
    """WCAG 2 contrast ratio of two `#rrggbb` colours (1 to 21; text needs 4.5 for AA)."""
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


# -- subscribers and campaigns -------------------------------------------------------------


def seed_subscribers(n: int, prefix: str = "reader") -> list[str]:
    """Import `n` active subscribers `{prefix}{i}@example.org` named "Reader i"; returns the addresses."""
    rows = [(i + 2, f"{prefix}{i}@example.org", f"Reader {i}") for i in range(n)]
    with session_scope() as session:
        import_rows(session, rows, ImportReport())
    return [email for _, email, _ in rows]


def make_campaign(seed_path: Path = SEED, n: int = 100) -> int:
    """`n` subscribers and a campaign for the episode at `seed_path`, not queued; returns its id."""
    from worker.publish import create_campaign

    seed_subscribers(n)
    settings = get_settings()
    with session_scope() as s:
        result = create_campaign(s, load_episode(seed_path, settings.tz), settings)
        return result.campaign.id


def campaign_status(campaign_id: int) -> dict:
    """`ledger.status` of one campaign."""
    from worker.ledger import status

    with session_scope() as session:
        return status(session, campaign_id).as_dict()


def wait_done(campaign_id: int, timeout: float = 120, stack=None) -> dict:  # noqa: ANN001
    """Poll until the campaign is done (at most `timeout` seconds); returns its status. On a
    timeout the error shows the status and, given a `stack`, the worker's logs."""
    return wait_for(
        lambda: (st := campaign_status(campaign_id))["state"] == "done" and st,
        timeout,
        f"campaign {campaign_id} to finish",
        details=lambda: f"{campaign_status(campaign_id)}\n{stack.logs() if stack else ''}",
    )


def old_link(settings, address: str, nonce: str, days: float) -> str:  # noqa: ANN001
    """A confirmation token signed `days` ago."""

    class Then(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time() - days * 86400)

    serializer = URLSafeTimedSerializer(settings.signing_key, salt="newsletter.confirm", signer=Then)
    return serializer.dumps({"e": address, "n": nonce, "l": settings.list_id})


def poll_concurrently(url: str, settings, pollers: int = 4) -> list:  # noqa: ANN001
    """Poll one feed from `pollers` threads at once; returns their PollReports, raising the first
    error any of them hit."""
    import threading

    from worker.feeds import poll_feed

    results, errors = [], []

    def poller() -> None:
        try:
            results.append(poll_feed(url, settings))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=poller) for _ in range(pollers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results

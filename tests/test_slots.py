"""The cap on sessions to one destination, shared by every worker process through Redis."""

from __future__ import annotations

import pytest

from worker.slots import DestinationSlots, destination_of

from .stack import wait_for


@pytest.mark.parametrize(
    ("url", "destination"),
    [
        ("smtp://user:secret@relay.example.org:587?starttls=require", "smtp://relay.example.org:587"),
        ("smtps://mail.example.org", "smtps://mail.example.org"),
        ("ses://eu-west-1", "ses://eu-west-1"),
        ("postmark://token@", "postmark://"),
        ("maildir:var/outbox", "maildir:var/outbox"),
    ],
)
def test_a_destination_is_the_url_without_credentials(url, destination):
    assert destination_of(url) == destination


def test_processes_share_one_cap_per_destination(redis_url):
    a = DestinationSlots("smtp://relay:25", 5, "host-a:1", redis_url, ttl=60)
    b = DestinationSlots("smtp://relay:25", 5, "host-b:7", redis_url, ttl=60)
    other = DestinationSlots("smtp://elsewhere:25", 5, "host-b:7", redis_url, ttl=60)
    assert a.hold(4) == 4
    assert b.hold(4) == 1  # only one place left
    assert other.hold(4) == 4  # another destination has its own cap
    assert a.hold(4) == 4  # renewing keeps what it holds
    assert a.hold(2) == 2  # and asking for fewer gives the rest back
    assert b.hold(4) == 3
    a.release()
    assert b.hold(4) == 4
    assert a.hold(9) == 1


def test_a_process_that_stops_renewing_loses_its_sessions(redis_url):
    dead = DestinationSlots("smtp://relay:25", 3, "host-a:1", redis_url, ttl=0.3)
    live = DestinationSlots("smtp://relay:25", 3, "host-b:2", redis_url, ttl=60)
    assert dead.hold(3) == 3
    assert live.hold(3) == 0
    assert wait_for(lambda: live.hold(3) == 3, 10, "the dead process's hold to expire")


def test_without_redis_the_cap_is_per_process():
    slots = DestinationSlots("smtp://relay:25", 4, "host-a:1", "")
    assert slots.hold(10) == 4 and slots.hold(2) == 2
    slots.release()

"""`maildir:PATH`: each message becomes a file in a Maildir (the embedded default, `var/outbox`)."""

from __future__ import annotations

import mailbox
from collections.abc import Callable
from pathlib import Path

from ..errors import TemporaryFailure
from .base import Transport


class MaildirTransport(Transport):
    """Writes each message as a file into the Maildir at `path` (creating tmp/new/cur); a write
    error is a TemporaryFailure."""

    def __init__(self, path: Path):
        self.path = Path(path)
        # mailbox.Maildir(create=True) makes tmp/new/cur only for a folder that does not exist
        # yet; an existing empty folder would fail on the first message.
        for sub in ("tmp", "new", "cur"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        self._box = mailbox.Maildir(str(self.path), create=False)

    def send(
        self, envelope_from: str, recipient: str, message: bytes, confirm: Callable[[], bool] | None = None
    ) -> bool:
        if confirm is not None and not confirm():
            return False
        # Maildir writes to tmp/ and renames into new/: a message is there whole or not at all.
        # Return-Path and Delivered-To record the envelope, as a delivering MTA would.
        head = f"Return-Path: <{envelope_from}>\r\nDelivered-To: {recipient}\r\n".encode()
        try:
            self._box.add(head + message)
        except OSError as exc:
            raise TemporaryFailure(f"cannot write to {self.path}: {exc.strerror}") from exc
        return True

"""The transport interface: open once, send many prebuilt messages, close."""

from __future__ import annotations

import abc


class Transport(abc.ABC):
    """Sends one message to one recipient at a time, so every outcome maps to one ledger row.

    `send` raises `TemporaryFailure` (try later) or `PermanentFailure` (never again); anything
    else it raises is a bug. Implementations keep their connection between calls."""

    @abc.abstractmethod
    def send(self, envelope_from: str, recipient: str, message: bytes) -> None: ...

    def check(self) -> bool:
        """Is the connection still usable? (Cheap: called before reuse after idling.)"""
        return True

    def close(self) -> None:  # noqa: B027 - optional for transports without a connection
        pass

    def __enter__(self) -> "Transport":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""The transport interface: open once, send many prebuilt messages, close."""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable


class Transport(abc.ABC):
    """Sends one message to one recipient at a time, so every outcome maps to one ledger row.

    `send` returns True once the message is delivered, and raises `TemporaryFailure` (try later)
    or `PermanentFailure` (never again); anything else it raises is a bug, or comes from
    `confirm`. Implementations keep their connection between calls.

    `confirm`, when given, is called exactly once after the server has accepted the envelope and
    before any of the content leaves, and not at all when the envelope is refused. If it returns
    False the transaction is abandoned with nothing delivered and `send` returns False. The
    sender uses it to wait for its own ledger write while the envelope is on the wire.

    Errors (worker/errors.py): `Throttled` (slow down, nothing sent, not an attempt),
    `TemporaryFailure`, `RecipientRejected` / `MessageRejected` (both `PermanentFailure`), and
    `TransportConfigError` (nothing can be sent as configured: the campaign pauses), and
    `DeliveryUncertain` (sent, no answer: the row becomes 'uncertain', never resent by itself).

    A transport whose provider names each accepted message (SES, Postmark, Mailgun) records that
    id with `_accepted(id)`; the sender reads `provider_message_id` right after `send` returns, in
    the same thread, and stores it on the delivery row."""

    _ids = threading.local()

    @property
    def provider_message_id(self) -> str | None:
        """The provider's id for the message this thread last sent through this transport."""
        return getattr(self._ids, str(id(self)), None)

    def _accepted(self, provider_id: str | None) -> None:
        setattr(self._ids, str(id(self)), provider_id)

    @abc.abstractmethod
    def send(
        self, envelope_from: str, recipient: str, message: bytes, confirm: Callable[[], bool] | None = None
    ) -> bool: ...

    def check(self) -> bool:
        """Is the connection still usable? (Cheap: called before reuse after idling.)"""
        return True

    def close(self) -> None:  # noqa: B027 - optional for transports without a connection
        pass

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

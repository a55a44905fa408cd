"""A real SMTP server for tests: aiosmtpd on a free port, with faults chosen per recipient.

server.tempfail["a@x"] = 2      # answer 451 to RCPT for a@x, twice
server.permfail.add("b@x")      # answer 550 to RCPT for b@x, always
server.drop_data["c@x"] = 1     # close the connection mid-DATA, once
server.random_faults = 0.2      # 421/451 to 20% of commands (seeded)
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import random
import socket
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Received:
    envelope_from: str
    rcpt: str
    data: bytes
    mail_options: list[str] = field(default_factory=list)  # e.g. ["SMTPUTF8", "BODY=8BITMIME"]
    peer: tuple | None = None  # the client's (address, port): which connection brought it
    at: float = 0.0  # time.monotonic() when the whole message had arrived

    @property
    def message(self):  # noqa: ANN201
        return email.message_from_bytes(self.data, policy=email.policy.default)


@dataclass
class FaultyHandler:
    tempfail: dict[str, int] = field(default_factory=dict)
    permfail: set[str] = field(default_factory=set)
    drop_data: dict[str, int] = field(default_factory=dict)
    random_faults: float = 0.0
    drop_fraction: float = 0.0
    seed: int = 1
    # advertise RFC 2920 PIPELINING (aiosmtpd reads commands in order), as most servers do
    pipelining: bool = True
    helo_only: bool = False  # answer EHLO with 502, like an old plain-SMTP server
    sender_reply: str | None = None  # e.g. "553 5.7.1 sender rejected": refuse every MAIL FROM
    data_replies: dict[str, str] = field(default_factory=dict)  # recipient -> end-of-DATA reply
    reply_delay: float = 0.0  # seconds each RCPT reply waits: a server at network distance
    # Called with the recipients once a message's whole content has arrived, before the reply:
    # a test's window onto what the sender had recorded by then.
    on_data: Callable[[list[str]], None] | None = None
    received: list[Received] = field(default_factory=list)
    attempts: Counter = field(default_factory=Counter)
    sessions: Counter = field(default_factory=Counter)  # "ehlo" / "quit": how sessions began and ended
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def _roll(self, p: float) -> bool:
        with self.lock:
            return self._rng.random() < p

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: ANN001, ANN201
        if self.helo_only:
            return ["502 5.5.2 EHLO not implemented, say HELO"]
        with self.lock:
            self.sessions["ehlo"] += 1
        session.host_name = hostname
        if self.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_QUIT(self, server, session, envelope):  # noqa: ANN001, ANN201
        with self.lock:
            self.sessions["quit"] += 1
        return "221 Bye"

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: ANN001, ANN201
        if self.sender_reply:
            return self.sender_reply
        if self.random_faults and self._roll(self.random_faults / 3):
            return "451 4.3.2 please try again (MAIL)"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001, ANN201
        key = address.lower()
        if self.reply_delay:
            await asyncio.sleep(self.reply_delay)
        with self.lock:
            self.attempts[key] += 1
            if self.tempfail.get(key, 0) > 0:
                self.tempfail[key] -= 1
                return "451 4.2.1 mailbox busy, try later"
        if key in self.permfail:
            return "550 5.1.1 no such user here"
        if self.random_faults and self._roll(self.random_faults / 3):
            return "421 4.7.0 too busy, closing" if self._roll(0.5) else "451 4.3.2 try later (RCPT)"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201
        rcpts = [r.lower() for r in envelope.rcpt_tos]
        drop = False
        with self.lock:
            for r in rcpts:
                if self.drop_data.get(r, 0) > 0:
                    self.drop_data[r] -= 1
                    drop = True
        if not drop and self.drop_fraction and self._roll(self.drop_fraction):
            drop = True
        if drop:
            server.transport.close()  # the client sees the connection vanish mid-DATA
            return "421 4.4.2 connection dropped"
        if self.random_faults and self._roll(self.random_faults / 3):
            return "451 4.3.0 temporary failure (DATA)"
        for r in rcpts:
            if r in self.data_replies:
                return self.data_replies[r]
        if self.on_data is not None:
            self.on_data(rcpts)
        data = envelope.original_content or envelope.content
        with self.lock:
            for r in rcpts:
                self.received.append(
                    Received(envelope.mail_from, r, data, list(envelope.mail_options), session.peer, time.monotonic())
                )
        return "250 2.0.0 accepted"

    # -- what the tests read ------------------------------------------------------------------

    def per_recipient(self) -> dict[str, int]:
        with self.lock:
            counts: dict[str, int] = defaultdict(int)
            for r in self.received:
                counts[r.rcpt] += 1
            return dict(counts)


class SMTPServer:
    def __init__(self, handler: FaultyHandler | None = None, *, smtputf8: bool = False):
        """`smtputf8`: offer RFC 6531 SMTPUTF8 (aiosmtpd refuses non-ASCII addresses without it)."""
        self.handler = handler or FaultyHandler()
        self.port = free_port()
        self.controller = Controller(
            self.handler,
            hostname="127.0.0.1",
            port=self.port,
            data_size_limit=10 * 1024 * 1024,
            enable_SMTPUTF8=smtputf8,
        )

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}?starttls=off"

    def __enter__(self) -> SMTPServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


__all__ = ["SMTP", "SMTPServer", "FaultyHandler", "Received", "free_port"]

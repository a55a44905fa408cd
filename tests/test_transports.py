from __future__ import annotations

import mailbox
import os
import re
import shutil
import socket
import subprocess
import tempfile

import pytest

from worker.errors import ConfigError, PermanentFailure, TemporaryFailure
from worker.settings import Settings
from worker.transports import get_transport
from worker.transports.maildir import MaildirTransport
from worker.transports.smtp import SMTPTransport

from .smtp_server import SMTPServer
from .stack import wait_for

MSG = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nbody\r\n"


@pytest.mark.parametrize("pipelining", [False, True], ids=["plain", "pipelined"])
def test_smtp_outcomes_map_to_the_exception_tree(pipelining):
    from .smtp_server import FaultyHandler

    with SMTPServer(FaultyHandler(pipelining=pipelining)) as server:
        h = server.handler
        h.tempfail["temp@example.org"] = 1
        h.permfail.add("perm@example.org")
        h.drop_data["drop@example.org"] = 1
        t = SMTPTransport(server.url, timeout=10)
        t.send("a@example.org", "ok@example.org", MSG)
        with pytest.raises(TemporaryFailure) as temp:
            t.send("a@example.org", "temp@example.org", MSG)
        assert temp.value.code == 451
        with pytest.raises(PermanentFailure) as perm:
            t.send("a@example.org", "perm@example.org", MSG)
        assert perm.value.code == 550
        with pytest.raises(TemporaryFailure):
            t.send("a@example.org", "drop@example.org", MSG)
        # after the dropped connection the transport reconnects by itself
        t.send("a@example.org", "temp@example.org", MSG)
        t.send("a@example.org", "drop@example.org", MSG)
        assert t._conn.has_extn("pipelining") is pipelining
        t.close()
        assert h.per_recipient() == {"ok@example.org": 1, "temp@example.org": 1, "drop@example.org": 1}


@pytest.mark.parametrize("pipelining", [False, True], ids=["plain", "pipelined"])
def test_confirm_comes_between_envelope_and_content(pipelining):
    """The sender's go-ahead (its ledger write) is awaited once the server has accepted the
    envelope, never for a refused one, and a "no" or an error delivers nothing."""
    from .smtp_server import FaultyHandler

    handler = FaultyHandler(pipelining=pipelining)
    handler.permfail.add("perm@example.org")
    asked: list[tuple[str, int, int]] = []

    def answer(rcpt: str, go: bool):  # noqa: ANN202
        def confirm() -> bool:  # what the server had seen of this recipient when we were asked
            asked.append((rcpt, handler.attempts[rcpt], handler.per_recipient().get(rcpt, 0)))
            return go

        return confirm

    def broken() -> bool:
        raise RuntimeError("the database went away")

    with SMTPServer(handler) as server:
        t = SMTPTransport(server.url, timeout=10)
        assert t.send("a@example.org", "yes@example.org", MSG, confirm=answer("yes@example.org", True)) is True
        assert t.send("a@example.org", "no@example.org", MSG, confirm=answer("no@example.org", False)) is False
        with pytest.raises(PermanentFailure):
            t.send("a@example.org", "perm@example.org", MSG, confirm=answer("perm@example.org", True))
        assert t.send("a@example.org", "after@example.org", MSG) is True
        with pytest.raises(RuntimeError):
            t.send("a@example.org", "boom@example.org", MSG, confirm=broken)
        assert t._conn is None  # a transaction left half-open is not reused
        assert t.send("a@example.org", "last@example.org", MSG) is True
        t.close()
    # asked after RCPT reached the server and before any content did
    assert asked == [("yes@example.org", 1, 0), ("no@example.org", 1, 0)]
    assert handler.per_recipient() == {"yes@example.org": 1, "after@example.org": 1, "last@example.org": 1}


@pytest.mark.parametrize("pipelining", [False, True], ids=["plain", "pipelined"])
def test_an_address_cannot_smuggle_smtp_commands(pipelining):
    from .smtp_server import FaultyHandler

    with SMTPServer(FaultyHandler(pipelining=pipelining)) as server:
        t = SMTPTransport(server.url, timeout=10)
        with pytest.raises(PermanentFailure):
            t.send("a@example.org", "x@example.org>\r\nRCPT TO:<evil@example.org", MSG)
        with pytest.raises(ConfigError):
            t.send("a@example.org>\r\nRCPT TO:<evil@example.org", "x@example.org", MSG)
        assert t.send("a@example.org", "fine@example.org", MSG)
        t.close()
    assert server.handler.per_recipient() == {"fine@example.org": 1}
    assert "evil@example.org" not in server.handler.attempts


def test_maildir_confirm(tmp_path):
    t = MaildirTransport(tmp_path / "box")
    assert t.send("a@example.org", "b@example.org", MSG, confirm=lambda: False) is False
    assert t.send("a@example.org", "c@example.org", MSG, confirm=lambda: True) is True
    box = mailbox.Maildir(str(tmp_path / "box"), create=False)
    assert [m["Delivered-To"] for m in box] == ["c@example.org"]


def test_smtp_connection_is_reused():
    with SMTPServer() as server:
        t = SMTPTransport(server.url, timeout=10)
        for i in range(20):
            t.send("a@example.org", f"r{i}@example.org", MSG)
        first = t._conn
        t.send("a@example.org", "last@example.org", MSG)
        assert t._conn is first and t.check()
        t.close()


def test_unreachable_server_is_temporary():
    from .smtp_server import free_port

    t = SMTPTransport(f"smtp://127.0.0.1:{free_port()}", timeout=3)
    with pytest.raises(TemporaryFailure):
        t.send("a@example.org", "b@example.org", MSG)


def test_starttls_required_but_not_offered():
    with SMTPServer() as server:
        t = SMTPTransport(f"smtp://127.0.0.1:{server.port}?starttls=require", timeout=5)
        with pytest.raises(TemporaryFailure, match="STARTTLS"):
            t.send("a@example.org", "b@example.org", MSG)


def test_maildir_writes_whole_messages(tmp_path):
    t = MaildirTransport(tmp_path / "box")
    t.send("bounce@example.org", "b@example.org", MSG)
    box = mailbox.Maildir(str(tmp_path / "box"), create=False)
    msgs = list(box)
    assert len(msgs) == 1 and msgs[0]["Delivered-To"] == "b@example.org"
    assert not list((tmp_path / "box" / "tmp").iterdir())


@pytest.mark.parametrize(
    "url, kind",
    [("maildir:var/out", MaildirTransport), ("smtp://h:25", SMTPTransport), ("smtps://u:p@h", SMTPTransport)],
)
def test_transport_by_url(url, kind, tmp_path):
    s = Settings(mail_url=url, var_dir=tmp_path)
    assert isinstance(get_transport(s), kind)


def test_unknown_transport_is_a_config_error():
    # The settings refuse such a URL at start (tests/test_settings.py); this is the net behind it.
    with pytest.raises(ConfigError):
        get_transport(Settings.model_construct(**{**Settings().model_dump(), "mail_url": "carrier-pigeon://x"}))


@pytest.mark.parametrize(
    "body",
    [b"Subject: dots\r\n\r\n.leading dot\r\n..two\r\n.\r\n.\r\nend.\r\n", b".first\r\n\r\n.\r\n"],
    ids=["lines", "first-byte"],
)
@pytest.mark.parametrize("pipelining", [False, True], ids=["plain", "pipelined"])
def test_dot_stuffing_survives(pipelining, body):
    from .smtp_server import FaultyHandler

    with SMTPServer(FaultyHandler(pipelining=pipelining)) as server:
        t = SMTPTransport(server.url, timeout=10)
        t.send("a@example.org", "b@example.org", body)
        t.close()
        assert server.handler.received[0].data == body


SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"


class Sink:
    """Postfix's smtp-sink, which advertises PIPELINING; `extra` picks its faults."""

    def __init__(self, *extra: str):
        from .smtp_server import free_port

        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(delete=False)
        self.proc = subprocess.Popen(
            [SINK, "-u", "nobody", "-c", *extra, f"127.0.0.1:{self.port}", "100"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: _connects(self.port), 10, "smtp-sink to listen")

    def count(self) -> int:
        found = re.findall(rb"mesg=(\d+)", open(self.log.name, "rb").read())
        return int(found[-1]) if found else 0

    def stop(self) -> int:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        return self.count()


def _connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.integration  # Postfix's smtp-sink
def test_pipelining_against_postfix_smtp_sink():
    assert os.path.exists(SINK), "smtp-sink is missing: ./dev test installs Debian's postfix"
    sink = Sink()
    try:
        t = SMTPTransport(f"smtp://127.0.0.1:{sink.port}?starttls=off", timeout=10)
        for i in range(50):
            t.send("a@example.org", f"r{i}@example.org", MSG)
        assert t._conn.has_extn("pipelining")
        t.close()
    finally:
        assert sink.stop() == 50


@pytest.mark.integration  # Postfix's smtp-sink
@pytest.mark.parametrize(
    "fault",
    [["-Q", "rcpt"], ["-q", "data"], ["-q", "."]],
    ids=["421-at-rcpt", "vanish-at-data", "vanish-after-content"],
)
def test_pipelined_disconnects_are_temporary(fault):
    sink = Sink(*fault)
    try:
        t = SMTPTransport(f"smtp://127.0.0.1:{sink.port}?starttls=off", timeout=5)
        with pytest.raises(TemporaryFailure):
            t.send("a@example.org", "b@example.org", MSG)
        assert t._conn is None  # dropped, so the next send reconnects
    finally:
        sink.stop()


@pytest.mark.parametrize("pipelining", [False, True], ids=["plain", "pipelined"])
def test_what_a_5xx_means_depends_on_the_stage(pipelining):
    from worker.errors import SenderRefused

    from .smtp_server import FaultyHandler

    handler = FaultyHandler(
        pipelining=pipelining,
        data_replies={
            "big@example.org": "552 5.3.4 message too big",
            "spam@example.org": "554 5.7.1 message rejected as spam",
            "gone@example.org": "550 5.1.1 user unknown",
        },
    )
    handler.permfail.add("nouser@example.org")
    with SMTPServer(handler) as server:
        t = SMTPTransport(server.url, timeout=10)
        outcomes = {}
        for rcpt in ("big@example.org", "spam@example.org", "gone@example.org", "nouser@example.org"):
            with pytest.raises(PermanentFailure) as info:
                t.send("a@example.org", rcpt, MSG)
            outcomes[rcpt] = info.value.suppress
        # content refused: this delivery failed, the address stays; the mailbox refused: suppressed
        assert outcomes == {
            "big@example.org": False,
            "spam@example.org": False,
            "gone@example.org": True,
            "nouser@example.org": True,
        }
        t.send("a@example.org", "fine@example.org", MSG)  # the connection is still usable
        handler.sender_reply = "553 5.7.1 sender address rejected"
        with pytest.raises(SenderRefused) as refused:
            t.send("a@example.org", "fine@example.org", MSG)
        assert isinstance(refused.value, TemporaryFailure) and refused.value.code == 553
        t.close()


def test_a_refused_sender_suppresses_nobody(database, seed_path, monkeypatch):
    """A 5xx to MAIL FROM is our configuration, not 2,000 bad addresses."""
    from sqlalchemy import select

    from worker.db import session_scope
    from worker.ledger import counts
    from worker.models import Subscriber
    from worker.sending import Sender
    from worker.settings import get_settings, reset_settings

    from .factories import make_campaign
    from .smtp_server import FaultyHandler

    with SMTPServer(FaultyHandler(sender_reply="553 5.7.1 sender address rejected")) as server:
        monkeypatch.setenv("NEWSLETTER_MAIL_URL", server.url)
        reset_settings()
        cid = make_campaign(seed_path, 20)
        outcome = Sender(get_settings()).run(cid)
        assert outcome.sent == 0 and outcome.retry == 20
        with session_scope() as s:
            assert counts(s, cid)["retry"] == 20
            assert set(s.scalars(select(Subscriber.status))) == {"active"}


def test_a_helo_only_server_still_gets_mail():
    from .smtp_server import FaultyHandler

    with SMTPServer(FaultyHandler(helo_only=True)) as server:
        t = SMTPTransport(f"smtp://127.0.0.1:{server.port}", timeout=10)  # starttls=auto
        t.send("a@example.org", "b@example.org", MSG)
        assert not t._conn.has_extn("pipelining")
        t.close()
        assert server.handler.per_recipient() == {"b@example.org": 1}


@pytest.mark.parametrize("pipelining", [False, True], ids=["plain", "pipelined"])
def test_a_server_silent_after_the_final_dot_makes_the_delivery_uncertain(pipelining):
    """RFC 1047: the whole message went, the reply did not come within the timeout; the server
    may have taken it, so it is uncertain (never retried by itself), unlike a closed connection."""
    import asyncio

    from worker.errors import DeliveryUncertain

    from .smtp_server import FaultyHandler

    release = asyncio.Event()

    class Silent(FaultyHandler):
        async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201
            if "slow@example.org" in envelope.rcpt_tos:
                await asyncio.wait_for(release.wait(), 3)  # past the client's 1 s timeout
            return await super().handle_DATA(server, session, envelope)

    with SMTPServer(Silent(pipelining=pipelining)) as server:
        t = SMTPTransport(server.url, timeout=1)
        with pytest.raises(DeliveryUncertain, match="no reply from .* within 1 s"):
            t.send("a@example.org", "slow@example.org", MSG)
        assert t._conn is None  # the transaction is in an unknown state: not reused
        assert t.send("a@example.org", "next@example.org", MSG) is True
        t.close()


def test_streaming_sends_the_next_envelope_before_reading_the_previous_verdict():
    """RFC 2920 across messages: when the server is about to answer a final dot, the next
    message's MAIL is already in its input, so a session waits one round trip per message; the
    verdicts still arrive in order, each before the next message's `begin` returns."""
    import asyncio

    from .smtp_server import FaultyHandler

    class Peeking(FaultyHandler):
        def __post_init__(self) -> None:
            super().__post_init__()
            self.next_envelope_waiting: list[bool] = []

        async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201
            # aiosmtpd's own input buffer (private, read only): is the next MAIL already there?
            for _ in range(200):
                if b"MAIL FROM" in bytes(server._reader._buffer):
                    break
                await asyncio.sleep(0.005)
            self.next_envelope_waiting.append(b"MAIL FROM" in bytes(server._reader._buffer))
            return await super().handle_DATA(server, session, envelope)

    handler = Peeking(data_replies={"b@example.org": "554 5.7.1 rejected as spam"})
    handler.permfail.add("c@example.org")
    verdicts: list[object] = []

    def begin(verdict):  # noqa: ANN001, ANN202
        verdicts.append(verdict)
        return lambda: True

    with SMTPServer(handler) as server:
        t = SMTPTransport(server.url, timeout=10)
        for rcpt in ["a@example.org", "b@example.org", "c@example.org", "d@example.org", "e@example.org"]:
            try:
                assert t.send_streaming("s@example.org", rcpt, MSG, begin) is True
            except PermanentFailure as exc:  # c's RCPT is refused at once, in its own call
                verdicts.append(exc)
        verdicts.append(t.finish())
        assert t.finish() is None  # nothing left pending
        t.close()
    # begin(a: nothing before) begin(b: a ok) begin(c: b 554) c refused, begin(d: nothing
    # pending) begin(e: d ok), finish: e ok
    assert [type(v).__name__ if v else None for v in verdicts] == [
        None,
        None,
        "PermanentFailure",
        "PermanentFailure",
        None,
        None,
        None,
    ]
    assert verdicts[2].code == 554 and not verdicts[2].suppress  # content refused: the address stays
    assert verdicts[3].code == 550 and verdicts[3].suppress
    assert handler.per_recipient() == {"a@example.org": 1, "d@example.org": 1, "e@example.org": 1}
    # a, d: the next envelope was waiting when their dot was answered; e: the last, nothing behind
    assert handler.next_envelope_waiting[0] and handler.next_envelope_waiting[2]


def test_streaming_without_pipelining_is_plain_sending():
    from .smtp_server import FaultyHandler

    verdicts: list[object] = []
    with SMTPServer(FaultyHandler(pipelining=False)) as server:
        t = SMTPTransport(server.url, timeout=10)
        for rcpt in ["a@example.org", "b@example.org"]:
            assert t.send_streaming("s@example.org", rcpt, MSG, lambda v: verdicts.append(v) or (lambda: True))
        assert t._pending is None and t.finish() is None
        t.close()
        assert verdicts == [None, None] and server.handler.per_recipient() == {"a@example.org": 1, "b@example.org": 1}


@pytest.mark.parametrize("go", [True, False], ids=["ours", "taken-over"])
def test_streaming_asks_for_the_go_ahead_after_the_previous_verdict(go):
    """`begin` learns the previous verdict first; its `confirm` comes before any content, and a
    "no" sends none (the connection goes: inside DATA there is no way back)."""
    from .smtp_server import FaultyHandler

    handler = FaultyHandler()
    seen: list[tuple[str, object, int]] = []

    def begin_for(rcpt: str, answer: bool):  # noqa: ANN202
        def begin(verdict):  # noqa: ANN001, ANN202
            seen.append((rcpt, verdict, len(handler.received)))
            return lambda: answer

        return begin

    with SMTPServer(handler) as server:
        t = SMTPTransport(server.url, timeout=10)
        assert t.send_streaming("s@example.org", "a@example.org", MSG, begin_for("a@example.org", True))
        assert t.send_streaming("s@example.org", "b@example.org", MSG, begin_for("b@example.org", go)) is go
        assert t.finish() is None
        t.close()
    # b's begin ran once a's verdict was in (a had arrived), before anything of b
    assert seen == [("a@example.org", None, 0), ("b@example.org", None, 1)]
    assert handler.per_recipient() == ({"a@example.org": 1, "b@example.org": 1} if go else {"a@example.org": 1})


def test_a_failing_begin_mid_transaction_drops_the_connection():
    """`begin` runs after this message's envelope went out (its ledger write can fail: the
    database restarting). The server may then be inside DATA: reusing that connection would
    make the next envelope and message the content of this one, delivered to this recipient."""
    from .smtp_server import FaultyHandler

    handler = FaultyHandler()

    def failing(verdict):  # noqa: ANN001, ANN202
        raise RuntimeError("the database went away")

    with SMTPServer(handler) as server:
        t = SMTPTransport(server.url, timeout=10)
        assert t.send_streaming("s@example.org", "a@example.org", MSG, lambda v: lambda: True)
        with pytest.raises(RuntimeError):
            t.send_streaming("s@example.org", "b@example.org", MSG, failing)
        assert t._conn is None and t._pending is None
        assert t.send_streaming("s@example.org", "c@example.org", MSG, lambda v: lambda: True)
        assert t.finish() is None
        t.close()
    # a's verdict was read before b's begin failed; b got nothing, c exactly its own message
    assert handler.per_recipient() == {"a@example.org": 1, "c@example.org": 1}
    assert all(r.data.count(b"MAIL FROM") == 0 for r in handler.received)

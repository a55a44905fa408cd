from __future__ import annotations

import mailbox

import pytest

from worker.errors import ConfigError, PermanentFailure, TemporaryFailure
from worker.settings import Settings
from worker.transports import get_transport
from worker.transports.maildir import MaildirTransport
from worker.transports.smtp import SMTPTransport

from .smtp_server import SMTPServer

MSG = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nbody\r\n"


def test_smtp_outcomes_map_to_the_exception_tree():
    with SMTPServer() as server:
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
        t.close()
        assert h.per_recipient() == {"ok@example.org": 1, "temp@example.org": 1, "drop@example.org": 1}


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


@pytest.mark.parametrize("url, kind", [("maildir:var/out", MaildirTransport), ("smtp://h:25", SMTPTransport),
                                       ("smtps://u:p@h", SMTPTransport)])
def test_transport_by_url(url, kind, tmp_path):
    s = Settings(mail_url=url, var_dir=tmp_path)
    assert isinstance(get_transport(s), kind)


def test_unknown_transport_is_a_config_error():
    with pytest.raises(ConfigError):
        get_transport(Settings(mail_url="carrier-pigeon://x"))

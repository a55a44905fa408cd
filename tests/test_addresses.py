"""Addresses and header text from the real world: internationalised domains (IDNA), non-ASCII
local parts (SMTPUTF8), and RFC 2047 encoded-words of at most 75 characters, folded."""

from __future__ import annotations

import random
import re
from email.header import decode_header, make_header

import pytest
from sqlalchemy import select, update

from worker import headers
from worker.db import session_scope
from worker.errors import InputError, PermanentFailure
from worker.ledger import counts, resend_uncertain
from worker.message import MessageTemplate, Recipient, compose
from worker.models import Delivery, Subscriber
from worker.publish import create_campaign
from worker.sending import Sender
from worker.settings import get_settings, reset_settings
from worker.transports.smtp import SMTPTransport

from .factories import cli, episode, sample_episode, sample_episode_path, seed_subscribers
from .smtp_server import FaultyHandler, SMTPServer

ENCODED_WORD = re.compile(rb"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
IDN = "bo@smørrebrød.example"
IDN_WIRE = "bo@xn--smrrebrd-64af.example"


def header_block(message: bytes) -> bytes:
    return message.split(b"\r\n\r\n", 1)[0]


def field(message: bytes, name: str) -> bytes:
    """One header field as it is on the wire, folding included."""
    m = re.search(rb"^" + name.encode() + rb": .*?\r\n(?=\S)", header_block(message) + b"\r\n.", re.M | re.S)
    assert m, f"no {name} header"
    return m.group(0)


def decoded(raw_field: bytes) -> str:
    """What an RFC 2047 reader shows: adjacent encoded-words joined without the folding between
    them (section 6.2). CPython's structured-header parser puts a space there; `make_header` does not."""
    value = raw_field.split(b":", 1)[1].decode("utf-8")
    return str(make_header(decode_header(value)))


def assert_rfc2047_shape(message: bytes) -> None:
    for word in ENCODED_WORD.findall(header_block(message)):
        assert len(word) <= 75, word
    for line in header_block(message).split(b"\r\n"):
        if ENCODED_WORD.search(line):
            assert len(line) <= 76, line


@pytest.fixture
def template(settings) -> MessageTemplate:
    return compose(sample_episode(), settings)


# -- 11: encoded-words of at most 75 characters, folded -----------------------------------------

NAMES = [
    "É" * 50,  # the case: one 83-character encoded-word before
    "Åsa Öberg-Lindqvist",
    "Zoë “Zo” d’Arc-Ærøskøbing, PhD — Head of Østergaard Innovation & Research Department",
    "山田 太郎 " * 8,
    "محمد بن عبد الله " * 4,  # right to left
    "😀" * 30,  # four bytes each
    "e\u0301" * 40,  # combining accents
    'Tricky "quotes" \\ back\\slash: ñ',
    "=?utf-8?q?not_an_encoded_word?= ñ",
]


@pytest.mark.parametrize("name", NAMES, ids=range(len(NAMES)))
def test_display_names_become_short_folded_encoded_words(template, name):
    message, _ = template.build(Recipient("reader@example.org", name))
    to = field(message, "To")
    assert_rfc2047_shape(message)
    assert decoded(to) == f"{' '.join(name.split())} <reader@example.org>"
    assert b"\r\n" in to.rstrip(b"\r\n") or len(to) <= 78


def test_the_issue_case_is_no_longer_one_83_character_word(template):
    message, _ = template.build(Recipient("reader@example.org", "É" * 50))
    words = ENCODED_WORD.findall(field(message, "To"))
    assert len(words) >= 2 and max(map(len, words)) <= 75


def test_from_subject_and_list_id_carry_text_the_same_way(settings_env, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_FROM_ADDR", f"{'Ø' * 45} Radio <news@example.org>")
    monkeypatch.setenv("NEWSLETTER_LIST_NAME", "Liste für Ärzte und Ärztinnen " * 3)
    reset_settings()
    title = "Épisode 12 – Ça va? Les élèves à l’école d’été: “déjà vu” " * 2
    t = compose(episode(title=title), get_settings())
    message, _ = t.build(Recipient("reader@example.org", "Reader"))
    assert_rfc2047_shape(message)
    assert decoded(field(message, "From")) == f"{'Ø' * 45} Radio <news@example.org>"
    assert decoded(field(message, "Subject")).startswith("Épisode 12 – Ça va?")
    assert decoded(field(message, "List-Id")).startswith("Liste für Ärzte")
    assert decoded(field(message, "List-Id")).endswith(f"<{get_settings().list_id}>")


def test_list_unsubscribe_stays_one_unfolded_line(template):
    message, _ = template.build(Recipient(IDN, "É" * 60))
    line = field(message, "List-Unsubscribe")
    assert line.count(b"\r\n") == 1 and not ENCODED_WORD.search(line)
    assert re.fullmatch(rb"List-Unsubscribe: <https://[^>\s]+/unsubscribe/[^>\s]+>, <mailto:[^>\s]+>\r\n", line)
    assert field(message, "List-Unsubscribe-Post") == b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"


def test_ascii_headers_keep_their_bytes(template):
    message, _ = template.build(Recipient("reader@example.org", "Ada Lovelace"))
    assert field(message, "To") == b"To: Ada Lovelace <reader@example.org>\r\n"
    message, _ = template.build(Recipient("reader@example.org", "Lovelace, Ada (Countess)"))
    assert field(message, "To") == b'To: "Lovelace, Ada (Countess)" <reader@example.org>\r\n'
    assert field(message, "From") == b"From: The Roundup <newsletter@news.example.org>\r\n"


def test_random_text_round_trips_within_the_limits():
    rng = random.Random(2047)
    alphabet = "aZ09 _-=?\"'\\()<>,;:.@éßØ–’“漢字😀\u0301\u200fأ"
    for _ in range(300):
        text = " ".join("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(8)).strip()
        for folded in (headers.text_field("Subject", text), headers.address_field("To", text, "a@example.org")):
            raw = folded.encode("utf-8") + b"\r\n\r\n"
            assert_rfc2047_shape(raw)
            assert raw.isascii()
        assert decoded(headers.text_field("Subject", text).encode()) == headers.clean_line(text)
        if not text.isascii():  # an ASCII name is a quoted string instead, checked above
            to = decoded(headers.address_field("To", text, "a@example.org").encode())
            assert to == f"{headers.clean_line(text[:120])} <a@example.org>"


# -- 10: internationalised addresses --------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "wire"),
    [
        (IDN, IDN_WIRE),
        ("Ana@Bücher.Example", "Ana@xn--bcher-kva.example"),
        ("x@例子.广告", "x@xn--fsqu00a.xn--4rr70v"),
        ("ñoño@example.com", "ñoño@example.com"),  # the local part stays: it needs SMTPUTF8
        ("plain@example.com", "plain@example.com"),
    ],
)
def test_wire_form(address, wire):
    assert headers.wire_address(address) == wire


@pytest.mark.parametrize("address", ["a b@example.com", "a@b@example.com", "<a@example.com>", "x@exa\u200dmple.com"])
def test_addresses_that_cannot_be_written_are_input_errors(address):
    with pytest.raises(InputError):
        headers.wire_address(address)


def test_render_to_an_idn_address_writes_the_ascii_form(tmp_path):
    proc = cli("render", sample_episode_path(), "--out", tmp_path, "--to", IDN, "--name", "Bø")
    assert proc.returncode == 0, proc.stderr
    head = header_block((tmp_path / "message.eml").read_bytes())
    assert head.isascii() and f"<{IDN_WIRE}>".encode() in head


def test_render_to_a_non_ascii_local_part(tmp_path):
    proc = cli("render", sample_episode_path(), "--out", tmp_path, "--to", "ñoño@example.com")
    assert proc.returncode == 0, proc.stderr
    assert "To: <ñoño@example.com>".encode() in (tmp_path / "message.eml").read_bytes()


@pytest.mark.parametrize("pipelining", [False, True], ids=["plain", "pipelined"])
def test_smtp_sends_idn_in_ascii_and_utf8_local_parts_only_with_smtputf8(template, pipelining):
    with SMTPServer(FaultyHandler(pipelining=pipelining)) as plain:
        t = SMTPTransport(plain.url, timeout=5)
        message, _ = template.build(Recipient(IDN, "Bø"))
        assert t.send("news@example.org", IDN, message)
        got = plain.handler.received[-1]
        assert got.rcpt == IDN_WIRE and f"<{IDN_WIRE}>".encode() in header_block(got.data)
        utf8_message, _ = template.build(Recipient("ñoño@example.com", ""))
        with pytest.raises(PermanentFailure, match="SMTPUTF8") as info:
            t.send("news@example.org", "ñoño@example.com", utf8_message)
        assert info.value.suppress is False and len(plain.handler.received) == 1
        assert t.send("news@example.org", "next@example.org", message)  # the connection still works
    with SMTPServer(FaultyHandler(pipelining=pipelining), smtputf8=True) as modern:
        t = SMTPTransport(modern.url, timeout=5)
        assert t.send("news@example.org", "ñoño@example.com", utf8_message)
        got = modern.handler.received[-1]
        assert got.rcpt == "ñoño@example.com" and "SMTPUTF8" in got.mail_options
        assert "To: <ñoño@example.com>".encode() in got.data
        t.close()


def test_a_campaign_with_unusual_addresses_records_each_and_crashes_nothing(database, monkeypatch, smtp_server):
    """One IDN address (sent), one non-ASCII local part to a server without SMTPUTF8 (failed, with
    the reason), one whose message cannot be built (failed): none uncertain, the rest sent."""
    seed_subscribers(4)
    with session_scope() as s:
        for email in (IDN, "ñoño@example.com", "boom@example.org"):
            s.add(Subscriber(email=email, email_key=email.lower(), name="Ærlig Ø"))
    original = MessageTemplate.build

    def build(self, recipient, date=None):  # noqa: ANN001, ANN202
        if recipient.email == "boom@example.org":
            raise KeyError("a template slot that is not there")
        return original(self, recipient, date)

    monkeypatch.setattr(MessageTemplate, "build", build)
    settings = get_settings()
    with session_scope() as s:
        cid = create_campaign(s, sample_episode(), settings).campaign.id
    outcome = Sender(settings).run(cid)
    assert (outcome.sent, outcome.failed) == (5, 2)
    with session_scope() as s:
        c = counts(s, cid)
        errors = dict(s.execute(select(Delivery.email, Delivery.last_error).where(Delivery.campaign_id == cid)).all())
    assert c["sent"] == 5 and c["failed"] == 2 and c["uncertain"] == 0 and c["sending"] == 0
    assert "SMTPUTF8" in errors["ñoño@example.com"]
    assert "cannot build the message: KeyError" in errors["boom@example.org"]
    assert {r.rcpt for r in smtp_server.handler.received} >= {IDN_WIRE, "reader0@example.org"}


def test_resend_uncertain_with_an_idn_address(database, smtp_server):
    seed_subscribers(1)
    with session_scope() as s:
        s.add(Subscriber(email=IDN, email_key=IDN, name="Bø"))
    settings = get_settings()
    with session_scope() as s:
        cid = create_campaign(s, sample_episode(), settings).campaign.id
        s.execute(update(Delivery).where(Delivery.campaign_id == cid).values(status="uncertain"))
    with session_scope() as s:
        assert resend_uncertain(s, cid) == 2
    outcome = Sender(settings).run(cid)
    assert outcome.sent == 2 and outcome.failed == 0
    assert IDN_WIRE in {r.rcpt for r in smtp_server.handler.received}


def test_import_accepts_international_addresses(database, tmp_path):
    p = tmp_path / "s.csv"
    p.write_text(f"email,name\n{IDN},Bo\nñoño@example.com,Ño\n")
    proc = cli("subscribers", "import", p)
    assert proc.returncode == 0, proc.stderr
    assert "added 2" in proc.stdout

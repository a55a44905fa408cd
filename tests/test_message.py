from __future__ import annotations

import email
import email.policy
import re
from datetime import datetime

import icalendar
import pytest
from itsdangerous import BadSignature, URLSafeSerializer

from worker.episodes import load_episode
from worker.errors import InputError
from worker.message import (
    Recipient,
    compose,
    message_id,
    read_unsubscribe_token,
    unsubscribe_token,
    without_date,
)
from worker.settings import Settings


@pytest.fixture
def template(settings, seed_path):
    # sent before the sample's event, so the message carries its calendar part
    return compose(load_episode(seed_path, settings.tz), settings, datetime(2023, 11, 23, 9, 0))


def parse(raw: bytes):
    return email.message_from_bytes(raw, policy=email.policy.default)


def header_lines(raw: bytes) -> list[bytes]:
    head = raw.split(b"\r\n\r\n", 1)[0]
    return head.split(b"\r\n")


def test_headers_round_trip(settings, template):
    raw, mid = template.build(Recipient("Reader@Example.org", "Zoë Reader"))
    msg = parse(raw)
    assert msg["From"] == "The Roundup <newsletter@news.example.org>"
    assert msg["To"] == "Zoë Reader <Reader@Example.org>"
    assert msg["Subject"] == "Public Sector Technology Roundup: Episode 3"
    assert msg["Date"] is not None and msg["Date"].datetime is not None
    assert msg["Message-ID"] == mid == message_id(settings, template.episode_guid, "reader@example.org")
    assert msg["List-Id"] == '"Public Sector Technology Roundup" <roundup.news.example.org>'
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg.get_content_type() == "multipart/mixed"
    parts = [p.get_content_type() for p in msg.walk()]
    assert parts == ["multipart/mixed", "multipart/alternative", "text/plain", "text/html", "text/calendar"]
    assert not msg.defects and all(not p.defects for p in msg.walk())


def test_list_unsubscribe_is_one_unfolded_line(settings, template):
    raw, _ = template.build(Recipient("reader@example.org"))
    lines = [ln for ln in header_lines(raw) if ln.startswith(b"List-Unsubscribe:")]
    assert len(lines) == 1
    value = lines[0].decode()
    m = re.fullmatch(r"List-Unsubscribe: <(https://[^>]+)>, <(mailto:[^>]+)>", value)
    assert m, value
    token = m[1].rsplit("/", 1)[1]
    assert m[1] == f"https://news.example.org/unsubscribe/{token}"
    assert read_unsubscribe_token(settings, token) == "reader@example.org"
    assert "=?" not in value  # not RFC 2047-encoded
    assert all(len(ln) <= 998 for ln in header_lines(raw))


def test_unsubscribe_tokens_are_signed(settings):
    token = unsubscribe_token(settings, "a@example.org")
    # the itsdangerous format every link already sent carries
    assert token == URLSafeSerializer(settings.signing_key, salt="newsletter.unsubscribe").dumps(
        {"e": "a@example.org", "l": settings.list_id}
    )
    assert read_unsubscribe_token(settings, token) == "a@example.org"
    with pytest.raises(BadSignature):
        read_unsubscribe_token(settings, token[:-2] + ("AA" if not token.endswith("AA") else "BB"))
    with pytest.raises(BadSignature):
        read_unsubscribe_token(settings, token.split(".")[0])
    other = Settings(secret_key="another-key", list_id=settings.list_id)
    with pytest.raises(BadSignature):
        read_unsubscribe_token(settings, unsubscribe_token(other, "a@example.org"))
    other_list = Settings(secret_key=settings.secret_key, list_id="other.list")
    with pytest.raises(BadSignature):
        read_unsubscribe_token(settings, unsubscribe_token(other_list, "a@example.org"))


def test_bodies_decode_to_personalised_content(template):
    long_name = "Bartholomew-" + "x" * 120
    raw, _ = template.build(Recipient("reader@example.org", long_name))
    msg = parse(raw)
    html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    url = template.unsubscribe_url("reader@example.org")
    # the tokens were substituted before quoted-printable wrapping, so nothing is split
    assert f'href="{url}"' in html and f"Unsubscribe: {url}" in text
    assert f"Hi {long_name}," in html and f"Hi {long_name}," in text
    assert "NL" + template.rendered.nonce not in html + text
    raw_lines = raw.split(b"\r\n")
    assert max(len(ln) for ln in raw_lines) <= 998
    body_lines = raw.split(b"\r\n\r\n", 1)[1].split(b"\r\n")
    assert max(len(ln) for ln in body_lines) <= 78  # QP and base64 lines within 76, part headers within 78


def test_same_bytes_but_date_for_the_same_recipient(template):
    a, _ = template.build(Recipient("reader@example.org", "R"), date="Thu, 23 Nov 2023 10:00:00 +0000")
    b, _ = template.build(Recipient("reader@example.org", "R"))
    assert a != b
    assert without_date(a) == without_date(b)
    c, _ = template.build(Recipient("other@example.org", "R"))
    assert without_date(a) != without_date(c)


@pytest.mark.parametrize(
    "name",
    [
        "Eve\r\nBcc: victim@example.org",
        "Eve\nSubject: pwned",
        'Eve" <evil@example.org>, "x',
        "Eve\x00\x0b",
    ],
)
def test_no_header_injection_through_name(template, name):
    raw, _ = template.build(Recipient("reader@example.org", name))
    heads = header_lines(raw)
    assert not any(h.lower().startswith((b"bcc:", b"subject: pwned")) for h in heads)
    msg = parse(raw)
    assert msg["To"].addresses[0].addr_spec == "reader@example.org"
    assert len(msg["To"].addresses) == 1
    assert msg["Bcc"] is None


@pytest.mark.parametrize(
    "addr", ["a@example.org\r\nBcc: x@example.org", "a@example.org, b@example.org", "<a@example.org>", ""]
)
def test_bad_recipient_address_is_refused(template, addr):
    with pytest.raises(InputError):
        template.build(Recipient(addr))


def test_subject_injection_through_title(settings, tmp_path):
    p = tmp_path / "ep.md"
    p.write_text('---\ntitle: "Hi\\r\\nBcc: victim@example.org\\r\\n\\r\\nbody"\ndate: 2024-01-01\n---\nx\n')
    raw, _ = compose(load_episode(p, settings.tz), settings).build(Recipient("r@example.org"))
    msg = parse(raw)
    assert msg["Bcc"] is None
    assert msg["Subject"] == "Hi Bcc: victim@example.org body"


def test_non_ascii_subject_is_encoded(settings, tmp_path):
    p = tmp_path / "ep.md"
    p.write_text('---\ntitle: "Ça va? Ünïcödé — " \ndate: 2024-01-01\n---\nx\n', encoding="utf-8")
    raw, _ = compose(load_episode(p, settings.tz), settings).build(Recipient("r@example.org"))
    subject_line = [h for h in header_lines(raw) if h.startswith(b"Subject:")][0]
    assert subject_line.isascii() and b"=?utf-8?" in subject_line
    assert parse(raw)["Subject"] == "Ça va? Ünïcödé —"


def test_ics_attachment_parses(template):
    raw, _ = template.build(Recipient("r@example.org"))
    part = [p for p in parse(raw).walk() if p.get_content_type() == "text/calendar"][0]
    assert part.get_filename() == "event.ics"
    assert part.get_param("method") == "PUBLISH"
    cal = icalendar.Calendar.from_ical(part.get_payload(decode=True))
    events = list(cal.walk("VEVENT"))
    assert len(events) == 1
    ev = events[0]
    assert str(ev["SUMMARY"]) == "A Whole Team Approach to Effective Product Discovery: Panel Discussion"
    assert ev.decoded("DTSTART").isoformat() == "2023-11-29T17:30:00+00:00"
    assert ev.decoded("DTEND").isoformat() == "2023-11-29T19:30:00+00:00"
    assert "Codurance" in str(ev["LOCATION"])
    assert str(ev["UID"]).endswith("@news.example.org")


def test_message_ids_are_deterministic_and_distinct(settings):
    a = message_id(settings, "ep-1", "A@example.org")
    assert a == message_id(settings, "ep-1", "a@example.org")
    assert a != message_id(settings, "ep-2", "a@example.org")
    assert a != message_id(settings, "ep-1", "b@example.org")
    assert re.fullmatch(r"<nl\.[0-9a-f]{24}@news\.example\.org>", a)

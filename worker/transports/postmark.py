"""`postmark://SERVER_TOKEN@[?stream=broadcast]`: Postmark's Email API (POST /email).

Postmark's HTTP API takes JSON, not MIME, so the message we built is taken apart once more: From,
To, Subject, the text and HTML parts and the calendar attachment go in their fields, and every
other header we set (Message-ID, Date, List-Id, List-Unsubscribe, List-Unsubscribe-Post) goes in
`Headers` unchanged. Link and open tracking are off: the links stay ours. To have the exact bytes
leave, use Postmark's SMTP service instead (`smtp://TOKEN:TOKEN@smtp.postmarkapp.com:587`).

The token also comes from POSTMARK_SERVER_TOKEN; `?stream=` picks the message stream (default
`broadcast`, Postmark's stream for newsletters); `?endpoint=` another API base (tests).

Answers (https://postmarkapp.com/developer/api/overview#error-codes): 200 with ErrorCode 0 is
accepted (`MessageID` kept); 429 is throttling; 401 and ErrorCodes 10, 400, 401, 405, 412, 413
are configuration (token, sender signature, account); 406 (inactive recipient: hard bounce or
complaint on Postmark's side) and 300 about the To address are permanent for the recipient; other
422s are permanent for the message; 5xx is temporary.
"""

from __future__ import annotations

import base64
import os
import re
from email import policy
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx

from ..errors import ConfigError, MessageRejected, RecipientRejected, TemporaryFailure, TransportConfigError
from .provider import ProviderTransport

API = "https://api.postmarkapp.com"
CONFIG_CODES = {10, 400, 401, 405, 412, 413}
# Headers Postmark sets from its own fields; everything else we wrote goes through `Headers`.
OWN_FIELDS = {"from", "to", "subject", "mime-version", "content-type", "content-transfer-encoding"}


class PostmarkTransport(ProviderTransport):
    """Sends through Postmark's Email API (see the module docstring for the URL and the answers)."""

    name = "postmark"

    def __init__(self, url: str, *, timeout: float = 30.0):
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        token = unquote(parts.username or "") or os.environ.get("POSTMARK_SERVER_TOKEN", "")
        if not token:
            raise ConfigError(
                "NEWSLETTER_MAIL_URL postmark://TOKEN@ names no server token (nor is POSTMARK_SERVER_TOKEN set)"
            )
        self.stream = query.get("stream", ["broadcast"])[0]
        super().__init__(
            query.get("endpoint", [API])[0],
            timeout=timeout,
            headers={"X-Postmark-Server-Token": token, "Accept": "application/json"},
        )

    def build_request(self, envelope_from: str, recipient: str, message: bytes) -> dict[str, Any]:
        return {"method": "POST", "url": "/email", "json": payload(message, recipient, self.stream)}

    def parse_accepted(self, response: httpx.Response) -> str | None:
        body = _json(response)
        if body.get("ErrorCode", 0) != 0:  # 200 with an error code is not documented; be safe
            raise MessageRejected(f"postmark: {body.get('ErrorCode')} {body.get('Message', '')}")
        return str(body.get("MessageID") or "") or None

    def classify(self, response: httpx.Response, recipient: str) -> Exception:
        status = response.status_code
        body = _json(response)
        code = body.get("ErrorCode")
        what = f"{status} ErrorCode {code}: {body.get('Message') or self.text(response)}"
        if status == 429 or code == 429:
            return self.throttled(response, what)
        if status == 401 or code in CONFIG_CODES:
            return TransportConfigError(f"postmark refused our account or sender ({what})", code=status)
        if code == 406:
            return RecipientRejected(f"postmark: inactive recipient {recipient} ({what})", code=status)
        if code == 300 and re.search(r"'To'", str(body.get("Message", ""))):
            return RecipientRejected(f"postmark: invalid recipient {recipient} ({what})", code=status)
        if status >= 500:
            return TemporaryFailure(f"postmark: {what}", code=status)
        return MessageRejected(f"postmark: {what}", code=status)


def payload(message: bytes, recipient: str, stream: str) -> dict[str, Any]:
    """Postmark's JSON for one of our messages: the parts as they are, our headers unchanged."""
    # compat32 parsing and decoding by hand: the `default` policy's objects cost ~3 ms a message.
    msg = BytesParser(policy=policy.compat32).parsebytes(message)
    data: dict[str, Any] = {
        "From": str(msg["From"]),
        "To": recipient,
        "Subject": str(make_header(decode_header(msg["Subject"] or ""))),
        "MessageStream": stream,
        "TrackOpens": False,
        "TrackLinks": "None",
    }
    raw_headers = message.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace").split("\r\n")
    headers: list[dict[str, str]] = []
    for line in raw_headers:
        if line[:1] in (" ", "\t") and headers:  # a folded continuation
            headers[-1]["Value"] += " " + line.strip()
            continue
        name, _, value = line.partition(":")
        if name.strip().lower() not in OWN_FIELDS:
            headers.append({"Name": name.strip(), "Value": value.strip()})
    data["Headers"] = headers
    attachments = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        if part.get_filename():
            method = part.get_param("method")
            attachments.append(
                {
                    "Name": part.get_filename(),
                    "ContentType": f"{ctype}; method={method}" if method else ctype,
                    "Content": base64.b64encode(_payload_bytes(part)).decode("ascii"),
                }
            )
        elif ctype in ("text/plain", "text/html"):
            field = "TextBody" if ctype == "text/plain" else "HtmlBody"
            charset = part.get_content_charset() or "utf-8"
            data.setdefault(field, _payload_bytes(part).decode(charset, "replace"))
    if attachments:
        data["Attachments"] = attachments
    return data


def _json(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _payload_bytes(part: Message) -> bytes:
    """A MIME part's decoded body as bytes (b"" for a multipart container)."""
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""

"""Small local stand-ins for the mail providers' HTTP APIs, as documented:

- Postmark: POST /email with `X-Postmark-Server-Token`, JSON in, `{"MessageID", "ErrorCode": 0}`
  out; 401 for a bad token, 422 with ErrorCode 400 (sender signature not found) or 406 (inactive
  recipient), 429 when throttling.
- Mailgun: POST /v3/DOMAIN/messages.mime, basic auth `api:KEY`, multipart `to` + `message`;
  `{"id", "message": "Queued. Thank you."}`; 401 "Forbidden", 404 unknown domain, 429.
- An SES throttling front: relays to moto's server and answers every Nth SendEmail with SES v2's
  TooManyRequestsException (HTTP 429, `x-amzn-ErrorType`).

Every request is logged with its time and answer so tests can look at the pacing.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


@dataclass
class Logged:
    at: float
    status: int
    recipient: str = ""
    peer: tuple | None = None  # the client's (address, port): which connection asked


@dataclass
class ProviderState:
    token: str = "pm-token"
    api_key: str = "mg-key"
    domain: str = "mg.news.example.org"
    senders: set[str] = field(default_factory=lambda: {"newsletter@news.example.org"})
    inactive: set[str] = field(default_factory=set)
    throttle_every: int = 0  # every Nth send answers 429
    retry_after: str = "1"
    slow: dict[str, float] = field(default_factory=dict)  # recipient -> seconds to wait after accepting
    delivered: list[tuple[str, object]] = field(default_factory=list)  # (recipient, JSON or bytes)
    log: list[Logged] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    sends: int = 0

    def per_recipient(self) -> dict[str, int]:
        out: dict[str, int] = {}
        with self.lock:
            for rcpt, _ in self.delivered:
                out[rcpt.lower()] = out.get(rcpt.lower(), 0) + 1
        return out

    def throttled_now(self) -> bool:
        with self.lock:
            self.sends += 1
            return bool(self.throttle_every) and self.sends % self.throttle_every == 0


class _Handler(BaseHTTPRequestHandler):
    server: ProviderServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body leave together, not 40 ms apart (delayed ACK)

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _answer(self, status: int, body: object, headers: dict[str, str] | None = None, rcpt: str = "") -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting (timeout tests)
            self.close_connection = True
        with self.server.state.lock:
            self.server.state.log.append(Logged(time.time(), status, rcpt, self.client_address))

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/email":
            return self._postmark(body)
        if self.path.startswith("/v3/") and self.path.endswith("/messages.mime"):
            return self._mailgun(body, self.path[4 : -len("/messages.mime")])
        self._answer(404, {"message": "not found"})

    def _postmark(self, body: bytes) -> None:
        st = self.server.state
        if self.headers.get("X-Postmark-Server-Token") != st.token:
            return self._answer(401, {"ErrorCode": 10, "Message": "Bad or missing Server API token."})
        try:
            data = json.loads(body)
            rcpt, sender = data["To"], data["From"]
        except (ValueError, KeyError):
            return self._answer(422, {"ErrorCode": 402, "Message": "Received invalid JSON input."})
        if st.throttled_now():
            return self._answer(
                429, {"ErrorCode": 429, "Message": "Rate limit exceeded."}, {"Retry-After": st.retry_after}, rcpt
            )
        if not any(s in sender for s in st.senders):
            return self._answer(
                422,
                {
                    "ErrorCode": 400,
                    "Message": f"The 'From' address you supplied ({sender}) is not a Sender Signature on your account.",
                },
                rcpt=rcpt,
            )
        if rcpt.lower() in st.inactive:
            return self._answer(
                422,
                {
                    "ErrorCode": 406,
                    "Message": "You tried to send to recipient(s) that have "
                    f"been marked as inactive. Found inactive addresses: {rcpt.lower()}. "
                    "Inactive recipients are ones that have generated a hard bounce, "
                    "a spam complaint, or a manual suppression.",
                },
                rcpt=rcpt,
            )
        mid = str(uuid.uuid4())
        with st.lock:
            st.delivered.append((rcpt, data))
        time.sleep(st.slow.get(rcpt.lower(), 0))  # accepted, but the answer comes late (or never)
        self._answer(
            200,
            {"To": rcpt, "SubmittedAt": "2026-11-29T12:00:00Z", "MessageID": mid, "ErrorCode": 0, "Message": "OK"},
            rcpt=rcpt,
        )

    def _mailgun(self, body: bytes, domain: str) -> None:
        st = self.server.state
        auth = self.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"api:{st.api_key}".encode()).decode()
        if auth != expected:
            return self._answer(401, {"message": "Forbidden"})
        if domain != st.domain:
            return self._answer(404, {"message": f"Domain not found: {domain}"})
        fields = form_fields(self.headers["Content-Type"], body)
        rcpt = (fields.get("to") or b"").decode()
        raw = fields.get("message")
        if not rcpt or not raw:
            return self._answer(400, {"message": "'to' parameter is missing"})
        if st.throttled_now():
            return self._answer(429, {"message": "Too Many Requests"}, {"Retry-After": st.retry_after}, rcpt)
        mid = BytesParser(policy=policy.default).parsebytes(raw)["Message-ID"] or f"<{uuid.uuid4()}@{domain}>"
        with st.lock:
            st.delivered.append((rcpt, raw))
        self._answer(200, {"id": str(mid), "message": "Queued. Thank you."}, rcpt=rcpt)


def form_fields(content_type: str, body: bytes) -> dict[str, bytes]:
    """multipart/form-data fields as exact bytes (the stdlib parser would re-serialise a
    message/rfc822 part)."""
    boundary = content_type.split("boundary=", 1)[1].strip('"').encode()
    fields = {}
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, value = chunk[2:].partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]*)"', head)
        if name:
            fields[name.group(1).decode()] = value[:-2] if value.endswith(b"\r\n") else value
    return fields


class ProviderServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: ProviderState | None = None, handler: type = _Handler):
        self.state = state or ProviderState()
        super().__init__(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self) -> ProviderServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class _SESFront(BaseHTTPRequestHandler):
    """Relays SES v2 calls to moto, answering every Nth SendEmail with a throttling error."""

    server: SESThrottlingFront
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body leave together, not 40 ms apart (delayed ACK)

    def log_message(self, *args: object) -> None:
        pass

    def _relay(self, method: str) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        st = self.server.state
        if method == "POST" and self.path.startswith("/v2/email/outbound-emails") and st.throttled_now():
            data = json.dumps({"message": "Maximum sending rate exceeded."}).encode()
            self.send_response(429)
            self.send_header("x-amzn-ErrorType", "TooManyRequestsException")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            with st.lock:
                st.log.append(Logged(time.time(), 429))
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        r = httpx.request(method, self.server.upstream + self.path, content=body, headers=headers)
        self.send_response(r.status_code)
        for k, v in r.headers.items():
            if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(r.content)))
        self.end_headers()
        self.wfile.write(r.content)
        with st.lock:
            st.log.append(Logged(time.time(), r.status_code))

    def do_POST(self) -> None:  # noqa: N802
        self._relay("POST")

    def do_GET(self) -> None:  # noqa: N802
        self._relay("GET")


class SESThrottlingFront(ProviderServer):
    def __init__(self, upstream: str, state: ProviderState | None = None):
        self.upstream = upstream
        super().__init__(state, _SESFront)


# -- SES through moto's server mode (shared by the provider tests) -----------------------------


def ses_sent(region: str = "eu-west-1") -> list:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    return list(ses_backends[DEFAULT_ACCOUNT_ID][region].sent_messages)


def verify_identity(identity: str) -> None:
    import boto3

    boto3.client("sesv2", region_name="eu-west-1").create_email_identity(EmailIdentity=identity)

"""Amazon SNS message signatures, versions 1 (SHA1withRSA) and 2 (SHA256withRSA).

https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html: the string to
sign is "Key\\nvalue\\n" for, in this order, Message, MessageId, Subject (Notification, only when
present), SubscribeURL (confirmations), Timestamp, Token (confirmations), TopicArn, Type; the
signature is base64; the certificate is fetched from `SigningCertURL`, which must be https on an
SNS host (`sns.<region>.amazonaws.com`, `.amazonaws.com.cn` in China) — anything else would let
a forger name their own certificate. Certificates are cached by URL.

The fetch goes outside this machine; it and the host rule are parameters (`CertificateStore`), so
tests serve a self-made certificate from a local https server.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit

from ..errors import WebhookRejected

SNS_HOST = re.compile(r"^sns\.[a-z]{2}(?:-[a-z]+)+-\d{1,2}\.amazonaws\.com(?:\.cn)?$")
NOTIFICATION_KEYS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_KEYS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
MAX_CERT_BYTES = 16_384
_PLAIN_URL = re.compile(r"[!-\[\]-~]+")  # printable ASCII without space or backslash


def sns_url_allowed(url: str) -> bool:
    """https, no user or port, on a host of the form sns.<region>.amazonaws.com(.cn).

    The whole string must be printable ASCII with no space, backslash, '@' or fragment: urlsplit
    silently drops tabs, newlines and leading blanks (and other parsers read '\\' and '@' their
    own way), so the host it checks could differ from the one a fetch would reach."""
    if not _PLAIN_URL.fullmatch(url or "") or "#" in url or "@" in url:
        return False
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme == "https"
        and port in (None, 443)
        and not parts.username
        and not parts.password
        and bool(SNS_HOST.match(parts.hostname or ""))
    )


def fetch_https(url: str) -> bytes:
    """GET a certificate: https, no redirects, at most 16 KB, 5 s."""
    import httpx

    with httpx.stream("GET", url, timeout=5.0, follow_redirects=False) as response:
        if response.status_code != 200:
            raise WebhookRejected(f"signing certificate: HTTP {response.status_code}", 400)
        data = b""
        for chunk in response.iter_bytes():
            data += chunk
            if len(data) > MAX_CERT_BYTES:
                raise WebhookRejected("signing certificate too large", 400)
    return data


class CertificateStore:
    """Signing certificates by URL: checked against `allowed`, fetched with `fetch` once, cached.

    `allowed(url) -> bool` (default: `sns_url_allowed`); `fetch(url) -> PEM bytes` (default:
    `fetch_https`)."""

    def __init__(
        self,
        allowed: Callable[[str], bool] = sns_url_allowed,
        fetch: Callable[[str], bytes] = fetch_https,
        max_entries: int = 32,
    ):
        self.allowed, self.fetch, self.max_entries = allowed, fetch, max_entries
        self._cache: dict[str, object] = {}
        self._lock = threading.Lock()
        self.fetches = 0

    def public_key(self, url: str):  # noqa: ANN201 - a cryptography public key
        from cryptography import x509

        if not isinstance(url, str) or not self.allowed(url):
            raise WebhookRejected(f"SigningCertURL is not an SNS https URL: {str(url)[:200]!r}", 403)
        with self._lock:
            cert = self._cache.get(url)
        if cert is None:
            self.fetches += 1
            try:
                cert = x509.load_pem_x509_certificate(self.fetch(url))
            except ValueError as exc:
                raise WebhookRejected(f"signing certificate unreadable: {exc}", 400) from exc
            with self._lock:
                if len(self._cache) >= self.max_entries:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[url] = cert
        now = datetime.now(UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:  # type: ignore[attr-defined]
            raise WebhookRejected("signing certificate expired or not yet valid", 403)
        return cert.public_key()  # type: ignore[attr-defined]


def string_to_sign(message: dict) -> bytes:
    """The UTF-8 bytes an SNS signature covers: the message's keys in the order AWS gives
    (https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html), each as
    "key\\nvalue\\n". Raises WebhookRejected (400) when a required key is missing."""
    keys = NOTIFICATION_KEYS if message.get("Type") == "Notification" else CONFIRMATION_KEYS
    out = []
    for key in keys:
        if key in message and message[key] is not None:
            out.append(f"{key}\n{message[key]}\n")
        elif key != "Subject":
            raise WebhookRejected(f"SNS message lacks {key}", 400)
    return "".join(out).encode("utf-8")


def verify(message: dict, store: CertificateStore) -> None:
    """Raise WebhookRejected unless `message` (the parsed SNS JSON) carries a valid signature."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    version = message.get("SignatureVersion")
    algorithm = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(str(version))
    if algorithm is None:
        raise WebhookRejected(f"unknown SNS SignatureVersion {version!r}", 400)
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
    except ValueError as exc:
        raise WebhookRejected("SNS signature is not base64", 400) from exc
    data = string_to_sign(message)
    key = store.public_key(message.get("SigningCertURL", ""))
    try:
        key.verify(signature, data, padding.PKCS1v15(), algorithm)
    except (InvalidSignature, TypeError, ValueError) as exc:
        raise WebhookRejected("SNS signature does not verify", 403) from exc

"""DKIM signatures (RFC 6376) for mail we hand to an SMTP server or write to the Maildir.

With NEWSLETTER_DKIM_SELECTOR, NEWSLETTER_DKIM_DOMAIN and NEWSLETTER_DKIM_KEY_FILE (a PEM RSA
private key) set, `get_transport` wraps SMTP and Maildir in `DKIMSigning`: each message gets a
DKIM-Signature header in front of the bytes already built — nothing is re-serialised, so what
leaves is the built message plus one header. dkimpy signs with relaxed/relaxed canonicalisation
over From, To, Subject, Date, Message-ID, List-Id, List-Unsubscribe, List-Unsubscribe-Post,
MIME-Version and Content-Type (the list Gmail and Yahoo's bulk-sender rules look at; RFC 8058
section 4 asks for List-Unsubscribe and List-Unsubscribe-Post to be signed).

The providers (SES, Postmark, Mailgun) sign with the keys set up in their consoles instead.

dkimpy does the canonicalisation, hashing and header; its RSA step is pure Python (~8 ms of CPU
for a 2048-bit key here), so the signature itself is made by OpenSSL through `cryptography`
(PKCS#1 v1.5 is deterministic: the same bytes, ~1 ms).
"""

from __future__ import annotations

import base64
from typing import Any

from .errors import ConfigError
from .settings import Settings
from .transports.base import Transport
from .transports.wrappers import Wrapper

SIGNED_HEADERS = [
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"list-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"mime-version",
    b"content-type",
]


class Signer:
    """One configured key. `sign(message) -> header bytes` (the DKIM-Signature line, CRLF-ended)."""

    def __init__(self, settings: Settings):
        if not (settings.dkim_selector and settings.dkim_domain and settings.dkim_key_file):
            raise ConfigError(
                "DKIM needs all of NEWSLETTER_DKIM_SELECTOR, NEWSLETTER_DKIM_DOMAIN and NEWSLETTER_DKIM_KEY_FILE"
            )
        path = settings.path(settings.dkim_key_file)
        try:
            self.key = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"NEWSLETTER_DKIM_KEY_FILE {path}: {exc.strerror}") from exc
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        try:
            private = serialization.load_pem_private_key(self.key, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"NEWSLETTER_DKIM_KEY_FILE {path}: not an unencrypted PEM private key") from exc
        if not isinstance(private, rsa.RSAPrivateKey):
            raise ConfigError(f"NEWSLETTER_DKIM_KEY_FILE {path}: DKIM here needs an RSA key")
        # dkimpy reads PKCS#1 ("RSA PRIVATE KEY"); `openssl genrsa` writes PKCS#8 these days.
        self.key = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
        _use_openssl_for(private)
        self.selector = settings.dkim_selector.encode()
        self.domain = settings.dkim_domain.lower().encode()

    def sign(self, message: bytes) -> bytes:
        import dkim

        return dkim.sign(
            message,
            self.selector,
            self.domain,
            self.key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=SIGNED_HEADERS,
        )

    def public_record(self) -> str:
        """The TXT record to publish at SELECTOR._domainkey.DOMAIN: `v=DKIM1; k=rsa; p=…`."""
        from cryptography.hazmat.primitives import serialization

        key = serialization.load_pem_private_key(self.key, password=None)
        der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"


_OPENSSL_KEYS: dict[int, Any] = {}  # modulus -> cryptography RSAPrivateKey


def _use_openssl_for(private) -> None:  # noqa: ANN001
    """Route dkimpy's RSA signing step for this key through OpenSSL (see the module docstring)."""
    import dkim

    _OPENSSL_KEYS[private.private_numbers().public_numbers.n] = private
    if getattr(dkim.RSASSA_PKCS1_v1_5_sign, "openssl", False):
        return
    pure_python = dkim.RSASSA_PKCS1_v1_5_sign

    def sign(hash_context, private_key):  # noqa: ANN001, ANN202 - dkimpy's signature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, utils

        key = _OPENSSL_KEYS.get(private_key["modulus"])
        algorithm = {"sha256": hashes.SHA256(), "sha1": hashes.SHA1()}.get(hash_context.name)
        if key is None or algorithm is None:
            return pure_python(hash_context, private_key)
        return key.sign(hash_context.digest(), padding.PKCS1v15(), utils.Prehashed(algorithm))

    sign.openssl = True  # type: ignore[attr-defined]
    dkim.RSASSA_PKCS1_v1_5_sign = sign


class DKIMSigning(Wrapper):
    """A transport whose messages carry a DKIM-Signature (see the module docstring)."""

    def __init__(self, inner: Transport, settings: Settings):
        super().__init__(inner)
        self.signer = Signer(settings)

    def prepare(self, message: bytes) -> bytes:
        return self.signer.sign(message) + message


def dns_records(settings: Settings) -> list[tuple[str, str, str, str]]:
    """(name, type, value, why) for the sending domain: SPF, DKIM (when a key is configured) and
    DMARC. SPF names the servers as a placeholder to fill in; DMARC starts at p=none with reports
    to the bounce address's domain, as Google's and Yahoo's sender guidelines suggest."""
    domain = settings.dkim_domain or settings.sender_domain
    envelope_domain = (settings.verp_addr or settings.envelope_from).rpartition("@")[2] or domain
    spf_hint = {
        "ses": "include:amazonses.com",
        "postmark": "include:spf.mtasv.net",
        "mailgun": "include:mailgun.org",
    }.get(settings.mail_url.split(":", 1)[0].lower(), "ip4:YOUR.SMTP.SERVER.IP")
    records = [
        (
            envelope_domain,
            "TXT",
            f"v=spf1 {spf_hint} ~all",
            "SPF for the envelope sender's domain (Return-Path): which servers may send for it",
        )
    ]
    if settings.dkim_selector and settings.dkim_key_file:
        records.append(
            (
                f"{settings.dkim_selector}._domainkey.{domain}",
                "TXT",
                Signer(settings).public_record(),
                "DKIM public key; d= aligns with the From domain",
            )
        )
    records.append(
        (
            f"_dmarc.{settings.sender_domain}",
            "TXT",
            f"v=DMARC1; p=none; rua=mailto:dmarc-reports@{settings.sender_domain}; adkim=r; aspf=r",
            "DMARC (required for bulk senders by Gmail and Yahoo); move to p=quarantine once reports are clean",
        )
    )
    return records

"""`ses://REGION[?configuration_set=NAME]`: Amazon SES v2 SendEmail with raw content.

boto3 `sesv2.send_email(Content={"Raw": {"Data": bytes}}, Destination={"ToAddresses": [one]})`
sends our bytes as they are (SES adds its own Message-ID only when the message has none; ours is
kept) — https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_SendEmail.html. Credentials,
and an endpoint override, come the usual boto3 ways (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY,
AWS_PROFILE, an instance role; AWS_ENDPOINT_URL_SESV2). The configuration set is where SES
publishes bounce, complaint and delivery events (to an SNS topic posting to /hooks/ses).

boto3's own retries are off: a throttling answer must reach the shared limiter, not be retried
blindly by one process. Errors (the API reference's "Errors" section):
TooManyRequestsException, LimitExceededException, Throttling → throttled (quota or rate);
SendingPausedException, MailFromDomainNotVerifiedException, AccountSuspendedException,
NotFoundException, credentials refused, and MessageRejected saying an identity is not verified
(sandbox) → configuration; MessageRejected otherwise → permanent for the message; BadRequest
naming an address → permanent for the recipient; 5xx and connection errors → temporary.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from ..errors import (
    ConfigError,
    DeliveryUncertain,
    MessageRejected,
    RecipientRejected,
    TemporaryFailure,
    Throttled,
    TransportConfigError,
)
from .base import Transport

THROTTLED = {"TooManyRequestsException", "LimitExceededException", "Throttling", "ThrottlingException"}
CONFIGURATION = {
    "SendingPausedException",
    "MailFromDomainNotVerifiedException",
    "AccountSuspendedException",
    "NotFoundException",
    "AccessDeniedException",
    "AccessDenied",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "IncompleteSignature",
    "MissingAuthenticationToken",
}


_clients: dict[tuple, object] = {}
_clients_lock = threading.Lock()


def _shared_client(region: str, timeout: float):  # noqa: ANN202 - botocore's client class is made at run time
    """One SES v2 client per region and timeout in a process, shared by its sending sessions:
    botocore clients are thread-safe (https://boto3.amazonaws.com/v1/documentation/api/latest/
    guide/clients.html#multithreading-or-multiprocessing-with-clients), and each new one loads
    the service model again (~9 MB measured here), so 32 sessions with a client each cost ~300 MB.
    `max_pool_connections` leaves a pooled connection for every session. The AWS_* environment
    (credentials, endpoint) is part of the key: a client keeps what it found when made."""
    key = (region, timeout, tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_"))))
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                retries={"total_max_attempts": 1, "mode": "standard"},
                connect_timeout=timeout,
                read_timeout=timeout,
                max_pool_connections=64,
            )
            client = _clients[key] = boto3.session.Session().client("sesv2", region_name=region, config=config)
        return client


class SESTransport(Transport):
    """Sends through Amazon SES v2 SendEmail with raw content (see the module docstring for the
    URL and the error mapping)."""

    name = "ses"

    def __init__(self, url: str, *, timeout: float = 30.0, client=None):  # noqa: ANN001
        parts = urlsplit(url)
        self.region = parts.hostname or ""
        if not self.region:
            raise ConfigError("NEWSLETTER_MAIL_URL ses://REGION names no region (e.g. ses://eu-west-1)")
        query = parse_qs(parts.query)
        self.configuration_set = query.get("configuration_set", [""])[0]
        self.timeout = timeout
        self._client = client

    @property
    def client(self):  # noqa: ANN201
        if self._client is None:
            self._client = _shared_client(self.region, self.timeout)
        return self._client

    def send(
        self, envelope_from: str, recipient: str, message: bytes, confirm: Callable[[], bool] | None = None
    ) -> bool:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionClosedError,
            NoCredentialsError,
            PartialCredentialsError,
            ReadTimeoutError,
        )

        params = {"Content": {"Raw": {"Data": message}}, "Destination": {"ToAddresses": [recipient]}}
        if self.configuration_set:
            params["ConfigurationSetName"] = self.configuration_set
        self._accepted(None)
        try:
            client = self.client
        except BotoCoreError as exc:
            raise TransportConfigError(f"ses: cannot set up the SES client: {exc}") from exc
        if confirm is not None and not confirm():
            return False
        try:
            answer = client.send_email(**params)
        except ClientError as exc:
            raise classify(exc, recipient) from exc
        except (ReadTimeoutError, ConnectionClosedError) as exc:  # sent; SES may have accepted it
            raise DeliveryUncertain(f"ses: no answer for {recipient} after sending: {exc}") from exc
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise TransportConfigError(f"ses: no AWS credentials: {exc}") from exc
        except BotoCoreError as exc:  # connection refused, timeouts, endpoint unreachable
            raise TemporaryFailure(f"ses: {exc}") from exc
        self._accepted(answer.get("MessageId"))
        return True

    def close(self) -> None:
        # The client is the process's, shared with the other sessions (and a staff test send's
        # transport): closing it here would close their connection pool too.
        self._client = None


def classify(exc, recipient: str) -> Exception:  # noqa: ANN001 - botocore.exceptions.ClientError
    """The exception a botocore ClientError from SES stands for (returned, not raised): Throttled,
    TransportConfigError, MessageRejected, RecipientRejected or TemporaryFailure, per the
    SendEmail API reference's Errors section."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    message = str(error.get("Message", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    what = f"{code}: {message}" if message else code
    if code in THROTTLED or status == 429 or re.search(r"rate exceeded|quota", message, re.I):
        after = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("retry-after")
        return Throttled(f"ses: {what}", code=status, retry_after=float(after) if after and after.isdigit() else None)
    if code in CONFIGURATION or status in (401, 403):
        return TransportConfigError(f"ses refused our account or sender ({what})", code=status)
    if code == "MessageRejected":
        if re.search(r"not verified|not authorized|did not have authority", message, re.I):
            return TransportConfigError(f"ses refused our sender ({what})", code=status)
        return MessageRejected(f"ses: {what}", code=status)
    if code == "BadRequestException" and re.search(r"address|recipient|destination", message, re.I):
        return RecipientRejected(f"ses: {recipient}: {what}", code=status)
    if status is not None and status < 500:
        return MessageRejected(f"ses: {what}", code=status)
    return TemporaryFailure(f"ses: {what}", code=status)

"""The exception tree. Input errors carry where they happened so the CLI can say it in one line."""

from __future__ import annotations


class NewsletterError(Exception):
    """Base of everything this package raises on purpose."""


class InputError(NewsletterError):
    """Bad user input (episode, CSV, argument). The CLI exits 2 with `str(error)`."""

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None, field: str | None = None):
        self.message = message
        self.source = source
        self.line = line
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.source:
            where.append(str(self.source))
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.field:
            where.append(f"field '{self.field}'")
        return (": ".join(where) + ": " if where else "") + self.message


class EpisodeError(InputError):
    """An episode document that cannot be read."""


class ConfigError(NewsletterError):
    """A setting that cannot work (bad URL, unknown transport)."""


class SettingsError(InputError, ConfigError):
    """A setting that cannot work, found at start. `source` is the variable (or the config file
    and its key); the CLI exits 2 with this one line."""


class TemplateMissing(ConfigError, LookupError):
    """A template file that is not in the templates folder (NEWSLETTER_TEMPLATES_DIR)."""


class NotFound(NewsletterError):
    """A campaign, episode or subscriber that does not exist."""


class ClaimExpired(NewsletterError):
    """A worker could not confirm its claim within the claim lease (it heard nothing from the
    database): a sweeper elsewhere may have taken the rows over, so it must send no more of them."""


class TransportError(NewsletterError):
    """Sending one message failed. `code` is the SMTP reply code when there was one."""

    def __init__(self, message: str, *, code: int | None = None):
        self.code = code
        super().__init__(message)


class TemporaryFailure(TransportError):
    """4xx, dropped connection or timeout: try this recipient again later."""


class SenderRefused(TemporaryFailure):
    """The server refused our envelope sender (or wants a login): a configuration problem,
    retried like a 4xx and never held against the subscriber."""


class Throttled(TemporaryFailure):
    """The server or provider asks us to slow down (SMTP 421/451/454 with rate wording, HTTP 429,
    a sending quota or daily cap reached). Nothing was delivered. Every worker pauses for
    `retry_after` seconds through the shared limiter and the message is tried again later without
    counting an attempt: throttling never fails a recipient nor ends a campaign early."""

    def __init__(self, message: str, *, code: int | None = None, retry_after: float | None = None):
        self.retry_after = retry_after
        super().__init__(message, code=code)


class DeliveryUncertain(TransportError):
    """The request went out whole but no answer came (a read timeout, a connection dropped before
    the reply): the provider may have accepted it. The delivery becomes 'uncertain' — reported,
    never resent by itself (`newsletter resend CAMPAIGN --uncertain`), as when a worker dies
    mid-send — because resending could deliver it twice."""


class PermanentFailure(TransportError):
    """5xx: this delivery has failed for good. `suppress`: the address itself is bad, so no
    campaign may try it again."""

    def __init__(self, message: str, *, code: int | None = None, suppress: bool = True):
        self.suppress = suppress
        super().__init__(message, code=code)


class RecipientRejected(PermanentFailure):
    """Permanent for this recipient (unknown mailbox, on the provider's suppression list): the
    delivery fails and the address is suppressed."""

    def __init__(self, message: str, *, code: int | None = None):
        super().__init__(message, code=code, suppress=True)


class MessageRejected(PermanentFailure):
    """Permanent for this message only (too big, content refused): the delivery fails, the
    address stays active."""

    def __init__(self, message: str, *, code: int | None = None):
        super().__init__(message, code=code, suppress=False)


class TransportConfigError(TransportError, ConfigError):
    """The transport cannot send anything as configured (bad API key, unverified sender or domain,
    account suspended). Sending stops for the whole campaign with this one line as the reason;
    no subscriber is held responsible and nothing counts as an attempt."""


class WebhookRejected(NewsletterError):
    """A webhook post that is forged, replayed, stale or malformed: answered with `status` (4xx)
    and changes nothing."""

    def __init__(self, message: str, status: int = 400):
        self.status = status
        super().__init__(message)


class NotAllowed(InputError):
    """A recipient outside the staff allowlist."""


class RateLimited(InputError):
    """Too many test emails in the last hour."""


class FeedError(NewsletterError):
    """A feed that could not be fetched or read (unreachable, HTTP error, too big, not
    well-formed, declaring entities). The message starts with the feed's URL or path."""


class TransitionRefused(InputError):
    """A subscriber status change the rules in `worker.subscriptions.TRANSITIONS` do not allow
    for this actor (for example a bounced address resubscribing itself)."""


class BadLink(InputError):
    """A signed link (confirm, manage) that is tampered, foreign or for nobody we know."""


class LinkExpired(BadLink):
    """A confirmation link older than NEWSLETTER_CONFIRM_LINK_DAYS."""


class CampaignStateError(InputError):
    """A campaign whose state does not allow the change asked for (pausing a draft, scheduling
    one that has started, a schedule time in the past). The CLI exits 2; the API answers 409."""

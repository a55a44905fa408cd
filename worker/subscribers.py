"""The subscriber list: validated addresses, case-insensitive uniqueness, statuses."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

from .errors import InputError


def normalise_email(value: str, *, where: str | None = None) -> str:
    """A syntactically valid address (no DNS), domain lower-cased; InputError otherwise."""
    value = (value or "").strip()
    if any(c in value for c in "\r\n\x00"):
        raise InputError("an email address cannot contain line breaks", source=where)
    try:
        result = validate_email(value, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise InputError(f"{value[:80]!r} is not a valid email address ({exc})", source=where) from None
    return result.normalized

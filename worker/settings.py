"""The one settings object: `NEWSLETTER_*` environment variables over `worker/config/newsletter.toml`."""

from __future__ import annotations

import os
import secrets
import tomllib
from email.utils import parseaddr
from functools import lru_cache
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .errors import SettingsError

# Templates and the default config ship inside the package (package data), so an installed
# wheel works on its own; NEWSLETTER_TEMPLATES_DIR and NEWSLETTER_CONFIG_FILE override them.
PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent
CONFIG_DIR = PACKAGE_DIR / "config"
DEFAULT_CONFIG_FILE = CONFIG_DIR / "newsletter.toml"
# Relative paths (var/, sqlite:///var/…, maildir:var/outbox) are taken from the source checkout
# when running from one, else from the directory the program was started in: an installed
# package must never write into site-packages.
BASE_DIR = PROJECT_DIR if (PROJECT_DIR / "pyproject.toml").is_file() else Path.cwd()

Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
# What NEWSLETTER_MAIL_URL may start with (worker.transports makes each).
MAIL_SCHEMES = ("smtp", "smtps", "maildir", "ses", "postmark", "mailgun")
AtLeastOne = Annotated[int, Field(ge=1)]


def config_file() -> Path:
    """The TOML file of defaults: `NEWSLETTER_CONFIG_FILE`, else the one in the package."""
    return Path(os.environ.get("NEWSLETTER_CONFIG_FILE") or DEFAULT_CONFIG_FILE)


class Settings(BaseSettings):
    """Every setting, from `NEWSLETTER_<NAME>` over the config file over these defaults.

    Durations are in seconds, rates in messages per second (`test_send_rate_per_hour` per hour),
    sizes in bytes. Construct it with `get_settings()`, which turns a bad value into one
    `SettingsError` line naming the variable.
    """

    model_config = SettingsConfigDict(env_prefix="NEWSLETTER_", extra="ignore")

    base_url: str = "https://podcast.example.com"
    from_addr: str = "Newsletter <newsletter@example.com>"
    bounce_addr: str = ""
    list_id: str = "newsletter.example.com"
    list_name: str = "Newsletter"
    unsubscribe_mailto: str = "unsubscribe@example.com"
    sender_postal: str = ""
    timezone: str = "Europe/London"
    secret_key: str = ""

    var_dir: Path = Path("var")
    templates_dir: Path = PACKAGE_DIR / "templates"
    database_url: str = "sqlite:///var/newsletter.db"
    broker_url: str = "sqla+sqlite:///var/broker.db"
    redis_url: str = ""
    mail_url: str = "maildir:var/outbox"

    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 100
    send_rate: NonNegative = 0
    max_attempts: AtLeastOne = 8
    retry_base_delay: Positive = 30
    # Below half the Redis visibility timeout (worker/celery.py), or a retry would run twice.
    retry_max_delay: Annotated[float, Field(gt=0, lt=1800)] = 900
    claim_lease: Positive = 120
    sweep_interval: Positive = 15
    send_window: str = ""  # "08:00-20:00" in `timezone`: claims wait outside it (worker.sendwindow)
    smtp_timeout: Positive = 30
    # Sending sessions (SMTP connections, HTTP clients) per worker process, and at most this many
    # to one destination (a relay or provider) from one process: worker/sending.py.
    # A thread, a connection and ~1 MB each: past a few hundred a process only queues for the
    # interpreter lock (the measurement at 40 ms wants 32).
    sessions_per_worker: Annotated[int, Field(ge=1, le=512)] = 32
    sessions_per_destination: AtLeastOne = 64
    # True: measure how many of those a process needs (worker.sending.SessionSizer); False: use
    # them all from the first message.
    sessions_auto: bool = True

    feeds: str = ""
    episodes_dir: str = ""
    poll_interval: Positive = 300
    auto_send: bool = True

    # Delivery through mail providers (issue 14). Per transport: messages per second over all
    # workers (0 = only NEWSLETTER_SEND_RATE) and a cap per UTC day (0 = none).
    ses_send_rate: float = 0
    ses_daily_cap: int = 0
    postmark_send_rate: float = 0
    postmark_daily_cap: int = 0
    mailgun_send_rate: float = 0
    mailgun_daily_cap: int = 0
    smtp_send_rate: float = 0
    smtp_daily_cap: int = 0
    # Bounce and complaint intake.
    verp_addr: str = ""
    bounce_mailbox: str = ""
    bounce_poll_interval: float = 300
    soft_bounce_limit: int = 3
    soft_bounce_window_days: float = 30
    webhook_replay_window: float = 300
    webhook_posts_per_minute: int = 6000
    ses_sns_topics: str = ""
    postmark_webhook_user: str = "postmark"
    postmark_webhook_secret: str = ""
    mailgun_webhook_signing_key: str = ""
    # DKIM for mail sent over SMTP or written to the Maildir.
    dkim_selector: str = ""
    dkim_domain: str = ""
    dkim_key_file: str = ""

    staff_token: str = ""
    staff_allowlist: str = ""
    test_send_rate_per_hour: Annotated[int, Field(ge=0)] = 30
    max_request_bytes: AtLeastOne = 1_048_576

    # Joining (worker.joining): double opt-in signup, confirmation and welcome emails.
    confirm_link_days: Positive = 7
    welcome_email: bool = False
    signup_blocked_domains: str = ""
    signup_disposable_domains: str = ""
    signup_ip_limit_per_hour: Annotated[int, Field(ge=0)] = 20  # 0: no limit
    signup_address_limit_per_hour: Annotated[int, Field(ge=0)] = 5  # 0: no limit

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=config_file()))

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/London") from None
        return value

    @field_validator("send_window")
    @classmethod
    def _send_window(cls, value: str) -> str:
        from .sendwindow import parse

        parse(value)
        return value.strip()

    @field_validator("base_url")
    @classmethod
    def _absolute_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an absolute http(s) URL such as https://news.example.org, got {value!r}")
        return value.strip().rstrip("/")

    @field_validator("from_addr", "bounce_addr", "unsubscribe_mailto")
    @classmethod
    def _address(cls, value: str, info) -> str:  # noqa: ANN001
        if value and "@" not in parseaddr(value)[1]:
            raise ValueError(f"expected an email address such as News <news@example.org>, got {value!r}")
        if info.field_name == "from_addr" and not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        hint = "expected a URL such as sqlite:///var/newsletter.db or postgresql+psycopg://user@host/db"
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError(hint) from None
        # postgres:// and postgresql:// (what hosting providers and libpq hand out) mean the
        # driver installed here; any other database is not supported.
        if url.drivername in ("postgres", "postgresql"):
            return value.replace(f"{url.drivername}://", "postgresql+psycopg://", 1)
        if (
            url.get_backend_name() not in ("sqlite", "postgresql")
            or url.drivername.startswith("postgresql+")
            and (url.drivername != "postgresql+psycopg")
        ):
            raise ValueError(f"{url.drivername}:// is not supported here; {hint}")
        return value

    @field_validator("mail_url")
    @classmethod
    def _mail_url(cls, value: str) -> str:
        from urllib.parse import urlsplit

        scheme, _, rest = value.partition(":")
        if scheme.lower() not in MAIL_SCHEMES:
            raise ValueError(f"expected a URL starting {', '.join(s + ':' for s in MAIL_SCHEMES)}")
        if scheme.lower() in ("smtp", "smtps") and not urlsplit(value).hostname:
            raise ValueError("names no server: smtp://[user:pass@]host[:port]")
        if scheme.lower() == "maildir" and not rest.strip("/"):
            raise ValueError("names no folder: maildir:PATH")
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        from kombu.transport import TRANSPORT_ALIASES

        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme.split("+", 1)[0] not in TRANSPORT_ALIASES:
            raise ValueError("expected a broker URL such as redis://127.0.0.1:6379/0 or sqla+sqlite:///var/broker.db")
        return value

    @field_validator("templates_dir")
    @classmethod
    def _templates_dir(cls, value: Path) -> Path:
        path = value if value.is_absolute() else BASE_DIR / value
        if not (path / "email").is_dir():
            raise ValueError(f"{str(path)!r} has no email/ folder of templates")
        return path

    # -- derived values -------------------------------------------------------------------

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def path(self, value: str | Path) -> Path:
        """A configured path; a relative one is taken from `BASE_DIR` (the checkout, or the
        working directory of an installed package)."""
        p = Path(value)
        return p if p.is_absolute() else BASE_DIR / p

    @property
    def resolved_database_url(self) -> str:
        return _absolute_sqlite(self.database_url)

    @property
    def resolved_broker_url(self) -> str:
        return _absolute_sqlite(self.broker_url)

    @property
    def limiter_redis_url(self) -> str:
        if self.redis_url:
            return self.redis_url
        return self.broker_url if self.broker_url.startswith(("redis://", "rediss://")) else ""

    @property
    def signing_key(self) -> str:
        """The secret for unsubscribe tokens and Message-IDs; made once for a local install."""
        if self.secret_key:
            return self.secret_key
        key_file = self.path(self.var_dir) / "secret.key"
        if key_file.exists():
            return key_file.read_text().strip()
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(32)
        # O_EXCL: two processes starting together must end with one key, not two.
        try:
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return key_file.read_text().strip()
        with os.fdopen(fd, "w") as fh:
            fh.write(key)
        return key

    @property
    def envelope_from(self) -> str:
        return self.bounce_addr or parseaddr(self.from_addr)[1]

    @property
    def sender_domain(self) -> str:
        return parseaddr(self.from_addr)[1].rpartition("@")[2] or "localhost"

    @property
    def staff_allowed(self) -> list[str]:
        return [a.strip().lower() for a in self.staff_allowlist.split(",") if a.strip()]

    @property
    def signup_refused_domains(self) -> frozenset[str]:
        """Lower-cased domains (blocked and disposable) whose addresses the signup form ignores."""
        both = f"{self.signup_blocked_domains},{self.signup_disposable_domains}"
        return frozenset(d.strip().lower().lstrip("@") for d in both.split(",") if d.strip())

    @property
    def feed_list(self) -> list[str]:
        return [f.strip() for f in self.feeds.split(",") if f.strip()]


def _absolute_sqlite(url: str) -> str:
    """`sqlite:///var/x.db` is relative to `BASE_DIR`, whatever the working directory."""
    for prefix in ("sqlite:///", "sqla+sqlite:///"):
        if url.startswith(prefix):
            rest = url[len(prefix) :]
            if rest and not rest.startswith("/") and not rest.startswith(":memory:"):
                path = BASE_DIR / rest
                path.parent.mkdir(parents=True, exist_ok=True)
                return prefix + str(path)
    return url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings, read once. Raises `SettingsError` (one line naming the variable, or the
    config file and its key) for a value that cannot work."""
    path = config_file()
    if not path.is_file():
        raise SettingsError(f"no such file: {path}", source="NEWSLETTER_CONFIG_FILE")
    try:
        return Settings()
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"not valid TOML: {exc}", source=str(path)) from None
    except ValidationError as exc:
        raise _settings_error(exc, path) from None


# Values never echoed back in an error message.
SECRET_FIELDS = {"secret_key", "staff_token", "database_url", "broker_url", "redis_url", "mail_url"}
_PYDANTIC_MESSAGES = {
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_parsing": "expected a number",
    "bool_parsing": "expected true or false",
    "greater_than": "must be more than {gt:g}",
    "greater_than_equal": "must be at least {ge:g}",
    "less_than": "must be less than {lt:g}",
    "less_than_equal": "must be at most {le:g}",
    "finite_number": "expected a finite number",
}


def _settings_error(exc: ValidationError, path: Path) -> SettingsError:
    """The first bad value as one line: where it came from, what is wrong, what it was."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    name = str(first["loc"][0]) if first["loc"] else "?"

    def where(name: str) -> str:  # the variable when it is set, else the config file's key
        variable = f"NEWSLETTER_{name.upper()}"
        return variable if variable in os.environ else name

    source = where(name) if where(name) != name else f"{path}: {name}"
    kind = first["type"]
    if kind == "value_error":
        message = str(first["ctx"]["error"])
    else:
        message = _PYDANTIC_MESSAGES.get(kind, first["msg"]).format(**first.get("ctx", {}))
        if name not in SECRET_FIELDS:
            message += f", got {first['input']!r}"
    if len(errors) > 1:
        # Name the others, so several mistakes are not fixed one run at a time.
        others = sorted({where(str(e["loc"][0])) for e in errors[1:] if e["loc"]} - {where(name)})
        message += f" (also bad: {', '.join(others)})" if others else f" (and {len(errors) - 1} more)"
    return SettingsError(message, source=source)


def check_database(settings: Settings, timeout: float = 5) -> None:
    """Connect once to `settings.database_url`; raise `SettingsError` naming
    NEWSLETTER_DATABASE_URL (password hidden) when that fails within `timeout` seconds."""
    import sqlalchemy as sa

    try:
        url = sa.engine.make_url(settings.resolved_database_url)  # makes the folder of a SQLite file
    except OSError as exc:
        raise SettingsError(f"cannot create the database folder: {exc}", source="NEWSLETTER_DATABASE_URL") from None
    args = {"connect_timeout": max(1, int(timeout))} if url.get_backend_name() == "postgresql" else {"timeout": timeout}
    engine = sa.create_engine(url, connect_args=args, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except sa.exc.DBAPIError as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0] if str(exc.orig or exc).strip() else type(exc).__name__
        shown = url.render_as_string(hide_password=True)
        raise SettingsError(f"cannot connect to {shown}: {reason}", source="NEWSLETTER_DATABASE_URL") from None
    finally:
        engine.dispose()


def reset_settings() -> None:
    """Forget the cached settings (tests change the environment between cases)."""
    get_settings.cache_clear()

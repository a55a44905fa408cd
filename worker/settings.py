"""The one settings object: `NEWSLETTER_*` environment variables over `worker/config/newsletter.toml`."""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

# Templates and the default config ship inside the package (package data), so an installed
# wheel works on its own; NEWSLETTER_TEMPLATES_DIR and NEWSLETTER_CONFIG_FILE override them.
PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent
CONFIG_DIR = PACKAGE_DIR / "config"
CONFIG_FILE = Path(os.environ.get("NEWSLETTER_CONFIG_FILE", CONFIG_DIR / "newsletter.toml"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NEWSLETTER_", toml_file=CONFIG_FILE, extra="ignore")

    base_url: str = "https://podcast.example.com"
    from_addr: str = "Newsletter <newsletter@example.com>"
    bounce_addr: str = ""
    list_id: str = "newsletter.example.com"
    list_name: str = "Newsletter"
    unsubscribe_mailto: str = "unsubscribe@example.com"
    sender_postal: str = ""
    timezone: str = "Europe/London"
    secret_key: str = ""

    var_dir: Path = PROJECT_DIR / "var"
    templates_dir: Path = PACKAGE_DIR / "templates"
    database_url: str = "sqlite:///var/newsletter.db"
    broker_url: str = "sqla+sqlite:///var/broker.db"
    redis_url: str = ""
    mail_url: str = "maildir:var/outbox"

    batch_size: int = 100
    send_rate: float = 0
    max_attempts: int = 8
    retry_base_delay: float = 30
    retry_max_delay: float = 900
    claim_lease: float = 120
    sweep_interval: float = 15
    smtp_timeout: float = 30

    feeds: str = ""
    episodes_dir: str = ""
    poll_interval: float = 300
    auto_send: bool = True

    staff_token: str = ""
    staff_allowlist: str = ""
    test_send_rate_per_hour: int = 30
    max_request_bytes: int = 1_048_576

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("base_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    # -- derived values -------------------------------------------------------------------

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def path(self, value: str | Path) -> Path:
        """A configured path, relative ones taken from the project folder."""
        p = Path(value)
        return p if p.is_absolute() else PROJECT_DIR / p

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
        from email.utils import parseaddr

        return self.bounce_addr or parseaddr(self.from_addr)[1]

    @property
    def sender_domain(self) -> str:
        from email.utils import parseaddr

        return parseaddr(self.from_addr)[1].rpartition("@")[2] or "localhost"

    @property
    def staff_allowed(self) -> list[str]:
        return [a.strip().lower() for a in self.staff_allowlist.split(",") if a.strip()]

    @property
    def feed_list(self) -> list[str]:
        return [f.strip() for f in self.feeds.split(",") if f.strip()]


def _absolute_sqlite(url: str) -> str:
    """`sqlite:///var/x.db` is relative to the project folder, whatever the working directory."""
    for prefix in ("sqlite:///", "sqla+sqlite:///"):
        if url.startswith(prefix):
            rest = url[len(prefix) :]
            if rest and not rest.startswith("/") and not rest.startswith(":memory:"):
                path = PROJECT_DIR / rest
                path.parent.mkdir(parents=True, exist_ok=True)
                return prefix + str(path)
    return url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings (tests change the environment between cases)."""
    get_settings.cache_clear()

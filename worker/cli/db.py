"""`newsletter db upgrade`."""

from __future__ import annotations

from ..settings import get_settings
from ._common import db_app, out, ready


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the database schema (Alembic; every other command runs it too)."""
    ready()
    out.print(f"database is up to date: {get_settings().resolved_database_url}", markup=False)

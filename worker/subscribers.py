"""The subscriber list: validated addresses, case-insensitive uniqueness, statuses."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from .errors import InputError, NotFound
from .models import Subscriber, SubscriberStatus, utcnow
from .subscriptions import Actor, erased, transition
from .text import one_line

#: What a `status` column may say for a new row (erased rows are never exported).
IMPORTABLE = (
    SubscriberStatus.PENDING,
    SubscriberStatus.ACTIVE,
    SubscriberStatus.UNSUBSCRIBED,
    SubscriberStatus.BOUNCED,
    SubscriberStatus.COMPLAINED,
    SubscriberStatus.SUPPRESSED,
)
MAX_CSV_BYTES = 200 * 1024 * 1024
CHUNK = 2000


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


def clean_name(value: str) -> str:
    """One line, no control characters. A leading = + - @ is kept but can never act as a
    spreadsheet formula on export (see `export_cell`)."""
    return one_line(value or "", 200)


def export_cell(value: str) -> str:
    """Neutralise spreadsheet formulas (CSV injection) in exported text."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


@dataclass
class ImportReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    not_reactivated: int = 0  # unsubscribed/suppressed addresses left as they are
    erased: int = 0  # addresses erased before (a keyed hash matched): left out
    bad: list[tuple[int, str]] = field(default_factory=list)
    # lower-cased address -> the status a `status` column gave it (the export's column)
    statuses: dict[str, str] = field(default_factory=dict)
    # lower-cased addresses added as pending: they are due a confirmation email
    pending: list[str] = field(default_factory=list)

    @property
    def good(self) -> int:
        return self.added + self.updated + self.unchanged + self.not_reactivated


def read_csv(path: Path, data: bytes | None = None) -> tuple[list[tuple[int, str, str]], ImportReport]:
    """Parse and validate; returns the good rows (line, email, name) and the report of bad ones.
    Raises InputError only when the file as a whole is unusable."""
    src = str(path)
    if data is None:
        try:
            if path.stat().st_size > MAX_CSV_BYTES:
                raise InputError(f"the file is larger than {MAX_CSV_BYTES // (1024 * 1024)} MB", source=src)
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read the file ({exc.strerror})", source=src) from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if b"\x00" in data[:4096]:
        raise InputError("this is a binary file, not CSV", source=src)
    # surrogateescape keeps undecodable bytes in place, so only the rows holding them are refused.
    text = data.decode("utf-8", errors="surrogateescape")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    report = ImportReport()
    try:
        header = next(reader)
    except StopIteration:
        raise InputError("the file is empty", source=src) from None
    except csv.Error as exc:
        raise InputError(f"the header row is not valid CSV ({exc})", source=src, line=1) from None
    columns = [h.strip().lower() for h in header]
    if "email" not in columns:
        raise InputError(
            f"the header row has no 'email' column (found: {', '.join(columns)[:200]})", source=src, line=1
        )
    email_col = columns.index("email")
    name_col = columns.index("name") if "name" in columns else None
    status_col = columns.index("status") if "status" in columns else None
    rows: list[tuple[int, str, str]] = []
    seen: set[str] = set()
    while True:
        line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            report.bad.append((line, f"not valid CSV ({exc})"))
            # strict mode stops at a broken quote; carry on with the next physical line
            reader = _resume(text, reader.line_num)
            continue
        if not row or not any(cell.strip() for cell in row):
            continue
        raw = row[email_col] if email_col < len(row) else ""
        name = row[name_col] if name_col is not None and name_col < len(row) else ""
        if _has_bad_bytes(raw) or _has_bad_bytes(name):
            report.bad.append((line, "not valid UTF-8"))
            continue
        try:
            email = normalise_email(raw)
        except InputError as exc:
            report.bad.append((line, exc.message))
            continue
        status = row[status_col].strip().lower() if status_col is not None and status_col < len(row) else ""
        if status and status not in IMPORTABLE:
            report.bad.append((line, f"status {status[:40]!r} is not one of {', '.join(IMPORTABLE)}"))
            continue
        key = email.lower()
        if key in seen:
            report.duplicates += 1
            continue
        seen.add(key)
        if status:
            report.statuses[key] = status
        rows.append((line, email, clean_name(_unneutralise(name))))
    return rows, report


class _Resumed:
    """A csv reader restarted after a broken row, keeping line numbers of the original file."""

    def __init__(self, text: str, skip_lines: int):
        lines = text.splitlines(keepends=True)
        self._offset = skip_lines
        self._reader = csv.reader(io.StringIO("".join(lines[skip_lines:]), newline=""), strict=True)

    @property
    def line_num(self) -> int:
        return self._offset + self._reader.line_num

    def __next__(self):  # noqa: ANN204
        return next(self._reader)


def _resume(text: str, line_num: int) -> _Resumed:
    return _Resumed(text, line_num)


def _has_bad_bytes(value: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in value)


def import_rows(
    session: Session,
    rows: list[tuple[int, str, str]],
    report: ImportReport,
    *,
    status: str = SubscriberStatus.ACTIVE,
    signing_key: str | None = None,
) -> ImportReport:
    """Upsert in bulk, in the caller's transaction (all or nothing). An existing address keeps
    its status: an unsubscribed or bounced person is never made active again by an import.

    New addresses get the file's `status` column when it has one, else `status`: ACTIVE (consent
    recorded elsewhere) or PENDING (they are listed in `report.pending` and are due a
    confirmation email). With `signing_key`, addresses erased before are left out (`erased`)."""
    if status not in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING):
        raise InputError(f"imported rows can be marked active or pending, not {status!r}")
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    now = utcnow()
    if signing_key:
        gone = erased(session, signing_key, [email for _, email, _ in rows])
        report.erased += len(gone)
        rows = [r for r in rows if r[1].lower() not in gone]
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        keys = [email.lower() for _, email, _ in chunk]
        existing = {
            key: (status, known_name)
            for key, status, known_name in session.execute(
                select(Subscriber.email_key, Subscriber.status, Subscriber.name).where(Subscriber.email_key.in_(keys))
            )
        }
        for _, email, name in chunk:
            key = email.lower()
            if key not in existing:
                report.added += 1
                if report.statuses.get(key, status) == SubscriberStatus.PENDING:
                    report.pending.append(key)
            elif existing[key][0] != SubscriberStatus.ACTIVE:
                report.not_reactivated += 1
            elif name and name != existing[key][1]:
                report.updated += 1
            else:
                report.unchanged += 1
        stmt = insert(Subscriber).values(
            [
                {
                    "email": email,
                    "email_key": email.lower(),
                    "name": name,
                    "status": report.statuses.get(email.lower(), status),
                    "status_reason": "import",
                    "source": "import",
                    "created_at": now,
                    "updated_at": now,
                }
                for _, email, name in chunk
            ]
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["email_key"],
            # a blank name in the file does not erase a known one; status is never touched
            set_={"name": func.coalesce(func.nullif(stmt.excluded.name, ""), Subscriber.name)},
        )
        session.execute(stmt)
    return report


def import_csv(session: Session, path: Path, **options: Any) -> ImportReport:
    """`read_csv` then `import_rows(..., **options)`."""
    rows, report = read_csv(path)
    return import_rows(session, rows, report, **options)


def _unneutralise(value: str) -> str:
    """Undo `export_cell`: an exported name comes back as it was."""
    return value[1:] if value[:1] == "'" and value[1:2] in ("=", "+", "-", "@", "\t", "\r") else value


def set_status(session: Session, email: str, status: str, reason: str = "") -> bool:
    """A staff change of status, by the rules in `worker.subscriptions`. Returns False for an
    unknown address; raises TransitionRefused for a change the rules do not allow."""
    try:
        transition(session, status, Actor.STAFF, email=email, reason=reason)
    except NotFound:
        return False
    return True


def count_by_status(session: Session) -> dict[str, int]:
    counts = dict(session.execute(select(Subscriber.status, func.count()).group_by(Subscriber.status)).all())
    return {s: counts.get(s, 0) for s in SubscriberStatus.ALL}

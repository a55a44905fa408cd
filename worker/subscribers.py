"""The subscriber list: validated addresses, case-insensitive uniqueness, statuses."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from .csv_input import SAVE_AS, read_table
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
    """A syntactically valid address (no DNS), domain lower-cased; InputError otherwise.
    Internationalised domains and local parts are accepted (RFC 6531): the domain goes out in
    its ASCII form, a non-ASCII local part only through a server offering SMTPUTF8."""
    value = (value or "").strip()
    if any(c in value for c in "\r\n\x00"):
        raise InputError("an email address cannot contain line breaks", source=where)
    try:
        result = validate_email(value, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        raise InputError(f"{value[:80]!r} is not a valid email address ({exc})", source=where) from None
    return result.normalized


# Beyond `text.clean_line`: C1 controls (from bytes read as Latin-1), line and paragraph
# separators, and bidirectional overrides, which could reorder what a header displays.
_NAME_BREAKS = re.compile(r"[\u0085\u2028\u2029]")
_NAME_DROP = re.compile(r"[\u0080-\u0084\u0086-\u009f\u202a-\u202e\u2066-\u2069]")


def clean_name(value: str) -> str:
    """One line of at most 200 characters, no control characters. A leading = + - @ is kept
    but can never act as a spreadsheet formula on export (see `export_cell`)."""
    return one_line(_NAME_DROP.sub("", _NAME_BREAKS.sub(" ", value or "")), 200)


def export_cell(value: str) -> str:
    """Neutralise spreadsheet formulas (CSV injection) in exported text."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


@dataclass
class ImportReport:
    """What reading or importing a subscriber file found: counts by outcome, bad rows as
    (line, reason), per-address statuses, pending addresses, warnings and the encoding used."""

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
    # one-line notes on how the file was read (an encoding guessed, stray quotes)
    warnings: list[str] = field(default_factory=list)
    encoding: str = "utf-8"

    @property
    def good(self) -> int:
        return self.added + self.updated + self.unchanged + self.not_reactivated


def read_csv(path: Path, data: bytes | None = None) -> tuple[list[tuple[int, str, str]], ImportReport]:
    """Parse and validate a subscriber file; returns the good rows (line, email, name) and the
    report (bad rows by line, warnings). Reads what spreadsheets and mail tools save (see
    `worker.csv_input`); columns by header: an address column (`email`, `E-mail Address`,
    `Email Address`…), a name (`name`, `Full Name`, or `First Name` + `Last Name`) and `status`.
    A file with no header whose first row holds an address is read as address[, name] rows.
    A row is refused only for its address or status, never for its name.

    Raises InputError only when the file as a whole is unusable (unreadable, binary, empty,
    no address column)."""
    src = str(path)
    if data is None:
        try:
            if path.stat().st_size > MAX_CSV_BYTES:
                raise InputError(f"the file is larger than {MAX_CSV_BYTES // (1024 * 1024)} MB", source=src)
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read the file ({exc.strerror})", source=src) from None
    table = read_table(data, src, lambda cells: _columns(cells) is not None)
    report = ImportReport(warnings=list(table.warnings), encoding=table.encoding)
    first_line, header = table.rows[0]
    cols = _columns(header)
    if cols is None:
        found = ", ".join(h.strip() for h in header)[:200]
        raise InputError(f"the header row has no 'email' column (found: {found})", source=src, line=first_line)
    body = table.rows if cols.headerless else table.rows[1:]
    rows: list[tuple[int, str, str]] = []
    seen: set[str] = set()
    width = len(header)
    for line, cells in body:
        display, raw = _split_address(_cell(cells, cols.email))
        try:
            email = normalise_email(raw)
        except InputError as exc:
            shifted = _shifted(cells, width, cols, table.delimiter)
            if shifted is None:
                report.bad.append((line, exc.message))
                continue
            email, cells = shifted
        status = _cell(cells, cols.status).strip().lower()
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
        name = " ".join(_unneutralise(_cell(cells, c).strip()) for c in cols.name) or display
        rows.append((line, email, clean_name(name)))
    return rows, report


@dataclass(frozen=True)
class _Columns:
    email: int
    name: tuple[int, ...]  # one column, or first + last name
    status: int | None
    headerless: bool = False


_EMAIL_HEADER = re.compile(r"(e ?mail|mail)( address)?( 1)?( value| address)?|email addr|primary email")
_NAME_HEADERS = ("name", "full name", "display name", "subscriber name", "contact name")
_FIRST_HEADERS = ("first name", "firstname", "given name", "fname", "first")
_LAST_HEADERS = ("last name", "lastname", "surname", "family name", "lname", "last")


def _columns(header: list[str]) -> _Columns | None:
    """Where the address, name and status are, from a header row (or a first data row)."""
    norm = [re.sub(r"[\s_\-]+", " ", h.strip().strip('"').lower()).strip() for h in header]

    def find(names: tuple[str, ...]) -> int | None:
        return next((i for i, h in enumerate(norm) if h in names), None)

    email = next((i for i, h in enumerate(norm) if _EMAIL_HEADER.fullmatch(h)), None)
    if email is None:
        # No header: a first row whose cell is an address is data (address[, name]).
        for i, cell in enumerate(header):
            try:
                normalise_email(_split_address(cell)[1])
            except InputError:
                continue
            others = [j for j in range(len(header)) if j != i]
            return _Columns(email=i, name=tuple(others[:1]), status=None, headerless=True)
        return None
    full = find(_NAME_HEADERS)
    first, last = find(_FIRST_HEADERS), find(_LAST_HEADERS)
    if full is not None:
        name: tuple[int, ...] = (full,)
    else:
        name = tuple(i for i in (first, last) if i is not None)
    return _Columns(email=email, name=name, status=find(("status",)))


def _shifted(cells: list[str], width: int, cols: _Columns, delimiter: str) -> tuple[str, list[str]] | None:
    """A row with more cells than the header because a name held an unquoted separator
    (`Fay, Jr.,fay@example.com`): when exactly one cell is an address, that is the address and
    the extra cells go back into the name. None when the row cannot be read that way."""
    extra = len(cells) - width
    if extra <= 0 or len(cols.name) != 1:
        return None
    found = []
    for i, cell in enumerate(cells):
        try:
            found.append((i, normalise_email(_split_address(cell)[1])))
        except InputError:
            continue
    if len(found) != 1 or found[0][0] != cols.email + (extra if cols.name[0] < cols.email else 0):
        return None
    at = cols.name[0]
    merged = cells[:at] + [delimiter.join(cells[at : at + extra + 1])] + cells[at + extra + 1 :]
    return found[0][1], merged


def _cell(cells: list[str], index: int | None) -> str:
    return cells[index] if index is not None and index < len(cells) else ""


def _split_address(value: str) -> tuple[str, str]:
    """`Ada Lovelace <ada@example.com>` or `mailto:ada@example.com` -> (display name, address)."""
    value = value.strip()
    if "<" in value and value.endswith(">"):
        display, addr = parseaddr(value)
        if addr:
            return display, addr
    return "", value.removeprefix("mailto:").strip()


def import_advice(report: ImportReport) -> str:
    """What to tell a person whose file had rejected rows (one line), or "" when none were."""
    if not report.bad:
        return ""
    return (
        f"{len(report.bad)} row{'s' if len(report.bad) != 1 else ''} rejected for their address or status "
        "(listed above); the other rows are imported. Correct those rows and import the file again. "
        f"To save the file, {SAVE_AS}; it needs an 'email' column."
    )


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
    """Subscribers per status, every status in `SubscriberStatus.ALL` present (0 when none)."""
    counts = dict(session.execute(select(Subscriber.status, func.count()).group_by(Subscriber.status)).all())
    return {s: counts.get(s, 0) for s in SubscriberStatus.ALL}


def list_subscribers(session: Session, status: str | None = None) -> list[tuple[str, str, str]]:
    """(email, name, status) of every subscriber, or of those with `status`, in the order they
    came in."""
    query = select(Subscriber).order_by(Subscriber.id)
    if status:
        query = query.where(Subscriber.status == status)
    return [(s.email, s.name, s.status) for s in session.scalars(query)]

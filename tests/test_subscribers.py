from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import func, select

from worker.db import session_scope
from worker.errors import InputError
from worker.models import Subscriber
from worker.subscribers import export_cell, import_csv, read_csv, set_status

from .conftest import FIXTURES
from .factories import cli as run


def write(tmp_path, content: bytes | str, name="subs.csv"):
    p = tmp_path / name
    p.write_bytes(content.encode() if isinstance(content, str) else content)
    return p


def all_subscribers() -> dict[str, tuple[str, str]]:
    with session_scope() as s:
        return {x.email: (x.name, x.status) for x in s.scalars(select(Subscriber))}


def test_import_validates_dedupes_and_reports_lines(database, tmp_path):
    p = write(
        tmp_path,
        "Email,Name\nada@example.com,Ada\nnot-an-email,Bad\nADA@EXAMPLE.COM,Dup\n"
        "grace@Example.COM,Grace\n,empty\nbob@example,No TLD\n",
    )
    with session_scope() as s:
        report = import_csv(s, p)
    assert report.added == 2 and report.duplicates == 1
    assert [line for line, _ in report.bad] == [3, 6, 7]
    assert "not-an-email" in report.bad[0][1]
    subs = all_subscribers()
    assert subs == {"ada@example.com": ("Ada", "active"), "grace@example.com": ("Grace", "active")}


def test_reimport_is_harmless_and_never_reactivates(database, tmp_path):
    p = write(tmp_path, "email,name\nada@example.com,Ada\nbob@example.com,Bob\n")
    with session_scope() as s:
        import_csv(s, p)
    with session_scope() as s:
        set_status(s, "bob@example.com", "unsubscribed")
        set_status(s, "ada@example.com", "bounced")
    p2 = write(tmp_path, "email,name\nAda@Example.com,Ada L\nbob@example.com,\ncy@example.com,Cy\n", "again.csv")
    with session_scope() as s:
        report = import_csv(s, p2)
    assert report.added == 1 and report.not_reactivated == 2
    subs = all_subscribers()
    assert subs["ada@example.com"][1] == "bounced"
    assert subs["bob@example.com"] == ("Bob", "unsubscribed")  # a blank name keeps the known one
    assert len(subs) == 3


def test_hostile_csv(database, tmp_path):
    rows = [
        b"email,name",
        b'"broken@example.com,"unclosed quote',
        b'ok1@example.com,=HYPERLINK("http://evil")',
        b'crlf@example.com,"Line\r\nBreak"',
        b"latin@example.com,Jos\xe9",
        b"ok2@example.com,Fine",
    ]
    p = write(tmp_path, b"\n".join(rows) + b"\n")
    with session_scope() as s:
        report = import_csv(s, p)
    subs = all_subscribers()
    assert "ok1@example.com" in subs and "ok2@example.com" in subs
    assert subs["crlf@example.com"][0] == "Line Break"
    # A byte that is not UTF-8 in a name costs nothing: Windows-1252, and a warning.
    assert subs["latin@example.com"][0] == "José"
    assert any("line 6 is not UTF-8" in w for w in report.warnings) and report.encoding == "windows-1252"
    assert export_cell(subs["ok1@example.com"][0]).startswith("'=")


def test_csv_without_email_column_is_refused(tmp_path):
    with pytest.raises(InputError, match="no 'email' column"):
        read_csv(write(tmp_path, "contact,name\nada at example.com,A\n"))
    with pytest.raises(InputError, match="empty"):
        read_csv(write(tmp_path, ""))


def test_import_is_all_or_nothing(database, tmp_path, monkeypatch):
    from worker import subscribers

    p = write(tmp_path, "email\n" + "".join(f"u{i}@example.com\n" for i in range(5000)))
    calls = {"n": 0}
    monkeypatch.setattr(subscribers, "CHUNK", 1000)

    from sqlalchemy.orm import Session

    orig_execute = Session.execute

    def failing_execute(self, stmt, *a, **k):  # noqa: ANN001
        if getattr(stmt, "table", None) is not None and stmt.table.name == "subscribers" and stmt.is_insert:
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("crash mid-import")
        return orig_execute(self, stmt, *a, **k)

    monkeypatch.setattr(Session, "execute", failing_execute)
    with pytest.raises(RuntimeError):
        with session_scope() as s:
            import_csv(s, p)
    monkeypatch.setattr(Session, "execute", orig_execute)
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Subscriber)) == 0
    assert calls["n"] == 3  # two chunks had been written when the third failed


def test_cli_import_list_count_remove(tmp_path):
    p = write(tmp_path, "email,name\nada@example.com,Ada\nbad,Bad\n")
    proc = run("subscribers", "import", p)
    assert proc.returncode == 1, proc.stderr  # a row was rejected; the good one is in
    assert "line 3" in proc.stderr and "added 1" in proc.stdout
    assert json.loads(run("subscribers", "count").stdout)["active"] == 1
    assert run("subscribers", "remove", "ada@example.com").returncode == 0
    assert json.loads(run("subscribers", "count").stdout) == {
        "pending": 0,
        "active": 0,
        "unsubscribed": 1,
        "bounced": 0,
        "complained": 0,
        "suppressed": 0,
        "erased": 0,
    }
    listed = json.loads(run("subscribers", "list", "--json").stdout)
    assert listed == [{"email": "ada@example.com", "name": "Ada", "status": "unsubscribed"}]
    assert run("subscribers", "remove", "nobody@example.com").returncode == 2
    assert run("subscribers", "import", tmp_path / "missing.csv").returncode == 2


# -- files as people's tools save them (tests/fixtures/csv/) ----------------------------------

CSV_DIR = FIXTURES / "csv"
PEOPLE = {
    "ana.pena@example.com": "Ana Peña",
    "bjorn@example.org": "Björn Ærø",
    "chloe@example.net": "Chloé d’Arc – CEO",
    "dima@example.com": "Dmitri “Dima” O'Neil",
    "eve@example.com": "Eve Müller, PhD",
}
CP1252 = "Windows-1252"
SHAPES = {
    # file: (encoding read, a warning that must appear or None, names that differ from PEOPLE)
    "excel-csv-comma-windows-1252.csv": ("windows-1252", CP1252, {}),
    "excel-unicode-text-utf16.txt": ("utf-16", None, {}),
    "excel-csv-utf8-bom-semicolon.csv": ("utf-8", None, {}),
    "excel-sep-hint-semicolon.csv": ("windows-1252", CP1252, {}),
    "mac-cr-line-endings.csv": ("utf-8", None, {}),
    "google-sheets-utf8.csv": ("utf-8", None, {}),
    "utf16-be-bom.csv": ("utf-16", None, {}),
    "utf16-le-no-bom.txt": ("utf-16", None, {}),
    "mailchimp-export.csv": ("utf-8", None, {}),
    "outlook-contacts.csv": ("windows-1252", CP1252, {}),
    "pasted-list-no-header.txt": (
        "utf-8",
        None,
        {"bjorn@example.org": "", "dima@example.com": "", "eve@example.com": "Eve Müller PhD"},
    ),
    "mixed-utf8-and-windows-1252.csv": ("utf-8+windows-1252", "lines 4, 5, 6 are not UTF-8", {}),
    "stray-quote-in-name.csv": (
        "utf-8",
        "line 2: quotes do not pair up",
        {"dima@example.com": 'Dmitri "Dima" O\'Neil'},
    ),
    "name-first-unquoted-comma.csv": ("windows-1252", CP1252, {}),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_every_shape_keeps_every_address_and_name(name):
    encoding, warning, changed = SHAPES[name]
    rows, report = read_csv(CSV_DIR / name)
    assert report.bad == [] and report.encoding == encoding
    assert {email: person for _, email, person in rows} == {**PEOPLE, **changed}
    if warning:
        assert any(warning in w for w in report.warnings), report.warnings
        assert all(w.startswith(str(CSV_DIR / name)) and "\n" not in w for w in report.warnings)
    else:
        assert report.warnings == []


def test_the_shapes_cover_every_file_in_the_corpus():
    assert {p.name for p in CSV_DIR.iterdir()} == {*SHAPES, "some-bad-addresses.csv"}


def test_excel_windows_1252_import_exits_0_with_a_warning_that_says_how_to_save():
    proc = run("subscribers", "import", CSV_DIR / "excel-csv-comma-windows-1252.csv")
    assert proc.returncode == 0, proc.stderr
    assert "added 5" in proc.stdout and "rejected 0" in proc.stdout
    warning = proc.stderr.strip()
    assert warning.startswith("warning: ") and "\n" not in warning
    assert "Windows-1252" in warning and '"CSV UTF-8 (Comma delimited)"' in warning
    listed = {r["email"]: r["name"] for r in json.loads(run("subscribers", "list", "--json").stdout)}
    assert listed == PEOPLE


def test_rejected_rows_make_the_exit_status_non_zero_and_say_how_to_save():
    path = CSV_DIR / "some-bad-addresses.csv"
    proc = run("subscribers", "import", path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"{path}: line 3: 'not-an-address' is not a valid email address" in proc.stderr
    assert f"{path}: line 5: 'chloe@example'" in proc.stderr
    advice = proc.stderr.strip().splitlines()[-1]
    assert advice.startswith("error: 2 rows rejected") and "CSV UTF-8" in advice and "'email' column" in advice
    assert "added 2" in proc.stdout and "rejected 2" in proc.stdout
    listed = {r["email"]: r["name"] for r in json.loads(run("subscribers", "list", "--json").stdout)}
    assert listed == {"ana.pena@example.com": "Ana Peña", "bjorn@example.org": "Björn Ærø"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "binary file, not CSV"),
        (b"PK\x03\x04\x14\x00\x06\x00", "spreadsheet workbook, not CSV"),
        (b"\xff\xfe" + "email\r\n".encode("utf-16-le") + b"\x00\xd8", "not valid UTF-16"),
        (b"\r\n\r\n  \r\n", "the file is empty"),
        (b"Adresse;Nom\r\nada;Ada\r\n", "no 'email' column (found: Adresse, Nom)"),
    ],
    ids=["png", "xlsx", "broken-utf16", "blank", "no-address-column"],
)
def test_unusable_files_are_one_line_naming_the_file(tmp_path, data, message):
    p = write(tmp_path, data)
    with pytest.raises(InputError, match=re.escape(message)) as info:
        read_csv(p)
    assert str(info.value).startswith(str(p)) and "\n" not in str(info.value)
    proc = run("subscribers", "import", p)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr


@pytest.mark.parametrize(
    ("line", "email", "name"),
    [
        (b"ana@example.com,Ana\x81\x8d Pe\xf1a\r\n", "ana@example.com", "Ana Peña"),  # bytes cp1252 lacks
        (b"ana@example.com,\xe2\x80\x9cAna\xe2\x80\x9d\r\n", "ana@example.com", "“Ana”"),  # UTF-8 stays UTF-8
        ("ana@example.com,  Ana\tPeña \u2028 Jr \r\n".encode(), "ana@example.com", "Ana Peña Jr"),
        (b"Ana <ana@example.com>,\r\n", "ana@example.com", "Ana"),  # the name from the address cell
        (b"mailto:ana@example.com,Ana\r\n", "ana@example.com", "Ana"),
        (b"ana@example.com," + b"A" * 5000 + b"\r\n", "ana@example.com", "A" * 199 + "…"),
        (b'ana@example.com,"Ana ""The Analyst"" Pe\xc3\xb1a"\r\n', "ana@example.com", 'Ana "The Analyst" Peña'),
        (b'ana@example.com,"Ana\r\n', "ana@example.com", "Ana"),  # a quote that never closes
    ],
    ids=["undefined-cp1252", "utf8-quotes", "whitespace", "display-name", "mailto", "long", "escaped-quotes", "open"],
)
def test_an_address_is_never_lost_because_of_its_name(tmp_path, line, email, name):
    rows, report = read_csv(write(tmp_path, b"email,name\r\n" + line + b"bo@example.com,Bo\r\n"))
    assert report.bad == []
    assert [(e, n) for _, e, n in rows] == [(email, name), ("bo@example.com", "Bo")]


def test_a_quoted_line_break_never_swallows_the_next_address(tmp_path):
    data = 'email,name\n"a@example.com","Ann\nB"\nb@example.com,"Bo\nc@example.com,Cy\n'
    rows, report = read_csv(write(tmp_path, data))
    assert [(e, n) for _, e, n in rows] == [
        ("a@example.com", "Ann B"),
        ("b@example.com", "Bo"),
        ("c@example.com", "Cy"),
    ]
    assert [line for line, _, _ in rows] == [2, 4, 5]


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-be", "cp1252"])
def test_separators_and_encodings_combine(tmp_path, sep, encoding):
    text = f"Name{sep}E-mail Address{sep}Status\r\nZoë Ørsted{sep}zoe@example.com{sep}active\r\n"
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    rows, report = read_csv(write(tmp_path, data))
    assert [(e, n) for _, e, n in rows] == [("zoe@example.com", "Zoë Ørsted")]
    assert report.statuses == {"zoe@example.com": "active"}

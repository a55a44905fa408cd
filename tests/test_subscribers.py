from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from worker.db import session_scope
from worker.errors import InputError
from worker.models import Subscriber
from worker.subscribers import export_cell, import_csv, read_csv, set_status

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
    assert "latin@example.com" not in subs
    assert any("UTF-8" in reason for _, reason in report.bad)
    assert export_cell(subs["ok1@example.com"][0]).startswith("'=")


def test_csv_without_email_column_is_refused(tmp_path):
    with pytest.raises(InputError, match="no 'email' column"):
        read_csv(write(tmp_path, "mail,name\na@example.com,A\n"))
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
    assert proc.returncode == 0, proc.stderr
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

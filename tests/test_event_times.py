"""Event times keep their meaning (issue 11, cases 3-4): a zone written on the event line wins
over NEWSLETTER_TIMEZONE, a start without am/pm takes the nearest meridiem before the end, and
ranges across midnight or a daylight-saving change keep each end's own offset."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from worker.episodes import load_episode, parse_time_range
from worker.episodes.dates import parse_time_span
from worker.episodes.markdown import parse_markdown
from worker.errors import EpisodeError

from .conftest import FIXTURES
from .factories import cli

LONDON = ZoneInfo("Europe/London")
UTC = UTC


def page(when: str, day: str = "10 April 2024") -> str:
    return (
        f"Show: Episode 1\n\n3 April 2024\n\nIntro.\n\nMeetup Event\n\nA meetup\n\n{when}\n{day}\n"
        "The Hall, Leeds\n\nAbout it.\n\nLinks & Sources\n\nTranscript.\n"
    )


def event(tmp_path, when: str, day: str = "10 April 2024", tz=LONDON):  # noqa: ANN001, ANN201
    path = tmp_path / "ep.txt"
    path.write_text(page(when, day))
    return load_episode(path, tz).event


def test_the_zone_on_the_line_wins_over_the_list_zone():
    ev = load_episode(FIXTURES / "episodes" / "zone-mdt.txt", LONDON).event
    assert ev.starts.astimezone(UTC) == datetime(2024, 4, 10, 15, 0, tzinfo=UTC)
    assert ev.ends.astimezone(UTC) == datetime(2024, 4, 10, 16, 30, tzinfo=UTC)
    assert ev.starts.strftime("%H:%M %Z") == "09:00 MDT" and ev.ends.strftime("%H:%M %Z") == "10:30 MDT"
    assert ev.venue == "Online" and ev.signup_url == "https://tickets.example.org/mountain"


@pytest.mark.parametrize(
    "when, day, start_utc, end_utc, labels",
    [
        ("6pm – 8pm BST", "10 April 2024", (17, 0), (19, 0), ("BST", "BST")),
        ("18:00 - 20:00 (CET)", "10 January 2024", (17, 0), (19, 0), ("CET", "CET")),
        ("18:00-20:00 CEST", "10 April 2024", (16, 0), (18, 0), ("CEST", "CEST")),
        ("6pm – 8pm GMT", "10 April 2024", (18, 0), (20, 0), ("GMT", "GMT")),
        ("1pm – 2pm EST", "10 July 2024", (18, 0), (19, 0), ("EST", "EST")),  # EST as written, even in July
        ("1pm – 2pm EDT", "10 July 2024", (17, 0), (18, 0), ("EDT", "EDT")),
        ("10am – 11am CST", "10 January 2024", (16, 0), (17, 0), ("CST", "CST")),
        ("10am – 11am CDT", "10 July 2024", (15, 0), (16, 0), ("CDT", "CDT")),
        ("9am – 10am MST", "10 January 2024", (16, 0), (17, 0), ("MST", "MST")),
        ("9am – 10am PST", "10 January 2024", (17, 0), (18, 0), ("PST", "PST")),
        ("9am – 10am PDT", "10 July 2024", (16, 0), (17, 0), ("PDT", "PDT")),
        ("9am – 10am PT", "10 January 2024", (17, 0), (18, 0), ("PST", "PST")),  # generic: the day's offset
        ("9am – 10am PT", "10 July 2024", (16, 0), (17, 0), ("PDT", "PDT")),
        ("7pm – 8pm ET", "10 July 2024", (23, 0), (0, 0), ("EDT", "EDT")),
        ("18:00-20:00 UTC+2", "10 January 2024", (16, 0), (18, 0), ("UTC+2", "UTC+2")),
        ("6pm – 8pm GMT-5", "10 January 2024", (23, 0), (1, 0), ("GMT-5", "GMT-5")),
        ("18:00 – 20:00 +02:00", "10 January 2024", (16, 0), (18, 0), ("+02:00", "+02:00")),
        ("18:00 – 19:00 UTC+05:30", "10 January 2024", (12, 30), (13, 30), ("UTC+05:30", "UTC+05:30")),
        ("at 6.30pm AEDT", "10 January 2024", (7, 30), None, ("AEDT",)),
    ],
)
def test_zones_and_offsets_on_the_line(tmp_path, when, day, start_utc, end_utc, labels):
    ev = event(tmp_path, when, day)
    assert ev.starts.astimezone(UTC).time() == time(*start_utc)
    assert (ev.ends.astimezone(UTC).time() if ev.ends else None) == (time(*end_utc) if end_utc else None)
    assert tuple(dt.strftime("%Z") for dt in (ev.starts, ev.ends) if dt) == labels


def test_no_zone_written_means_the_list_zone(tmp_path):
    ev = event(tmp_path, "6pm – 8pm", "10 January 2024", tz=ZoneInfo("America/Los_Angeles"))
    assert ev.starts == datetime(2024, 1, 10, 18, 0, tzinfo=ZoneInfo("America/Los_Angeles"))
    assert ev.starts.strftime("%Z") == "PST"


@pytest.mark.parametrize(
    "when, needle",
    [
        ("9am – 10am IST", "'IST' is ambiguous"),
        ("9am – 10am AST", "'AST' is ambiguous"),
        ("9am – 10am XST", "unknown time zone 'XST'"),
        ("9am – 10am QRDT", "unknown time zone 'QRDT'"),
        ("18:00 – 20:00 UTC+19", "not a time zone"),
    ],
)
def test_unknown_or_ambiguous_zone_is_an_error_naming_the_line(tmp_path, when, needle):
    path = tmp_path / "ep.txt"
    path.write_text(page(when))
    with pytest.raises(EpisodeError) as info:
        load_episode(path, LONDON)
    assert needle in str(info.value) and f"{path}: line 11:" in str(info.value)


@pytest.mark.parametrize("text", ["The Midday Meetup", "Midnight Snacks and Data", "Noon"])
def test_clock_words_in_a_title_are_not_times(text):
    assert parse_time_range(text) is None


@pytest.mark.parametrize("when", ["6pm – 8pm TBC", "6pm – 8pm (RSVP)", "6pm – 8pm AT THE HALL"])
def test_capitals_that_are_not_zones_are_not_read_as_zones(tmp_path, when):
    ev = event(tmp_path, when)
    assert ev.starts == datetime(2024, 4, 10, 18, 0, tzinfo=LONDON)


@pytest.mark.parametrize(
    "text, start, end",
    [
        ("11.30 – 12.30pm", (11, 30), (12, 30)),
        ("11 – 1pm", (11, 0), (13, 0)),
        ("6 to 8pm", (18, 0), (20, 0)),
        ("6.30 – 8pm", (18, 30), (20, 0)),
        ("9 – 11am", (9, 0), (11, 0)),
        ("12 – 1pm", (12, 0), (13, 0)),
        ("10 – 2am", (22, 0), (2, 0)),
        ("11am – 1", (11, 0), (13, 0)),
        ("10.30am – 12", (10, 30), (12, 0)),
        ("13:00 – 2pm", (13, 0), (14, 0)),
        ("5.30pm – 7.30pm", (17, 30), (19, 30)),
        ("18:00-20:00", (18, 0), (20, 0)),
    ],
)
def test_a_time_without_meridiem_takes_the_nearest_before_the_end(text, start, end):
    assert parse_time_range(text) == (time(*start), time(*end))


def test_meridiem_case_gives_a_one_hour_event(tmp_path):
    ev = event(tmp_path, "11.30 – 12.30pm")
    assert ev.starts == datetime(2024, 4, 10, 11, 30, tzinfo=LONDON)
    assert ev.ends - ev.starts == timedelta(hours=1)


def test_a_range_across_midnight_ends_the_next_day(tmp_path):
    ev = event(tmp_path, "10pm – 2am CET", "10 January 2024")
    assert ev.starts == datetime(2024, 1, 10, 22, 0, tzinfo=timezone(timedelta(hours=1)))
    assert ev.ends.astimezone(UTC) == datetime(2024, 1, 11, 1, 0, tzinfo=UTC)


def test_a_range_across_the_autumn_change_labels_each_end(tmp_path):
    # London goes from BST to GMT at 02:00 BST on 27 October 2024
    ev = event(tmp_path, "11pm – 3am", "26 October 2024")
    assert (ev.starts.strftime("%Z"), ev.ends.strftime("%Z")) == ("BST", "GMT")
    assert ev.starts.astimezone(UTC) == datetime(2024, 10, 26, 22, 0, tzinfo=UTC)
    assert ev.ends.astimezone(UTC) == datetime(2024, 10, 27, 3, 0, tzinfo=UTC)
    assert ev.ends.astimezone(UTC) - ev.starts.astimezone(UTC) == timedelta(hours=5)


def test_a_range_across_the_spring_change_labels_each_end_in_a_generic_zone(tmp_path):
    # US Eastern goes from EST to EDT at 02:00 on 10 March 2024
    ev = event(tmp_path, "11pm – 4am ET", "9 March 2024")
    assert (ev.starts.strftime("%Z"), ev.ends.strftime("%Z")) == ("EST", "EDT")
    assert ev.ends.astimezone(UTC) - ev.starts.astimezone(UTC) == timedelta(hours=4)


def test_a_time_skipped_by_the_spring_change_moves_forward(tmp_path):
    ev = event(tmp_path, "1.30am – 4am", "31 March 2024")
    assert ev.starts.strftime("%H:%M %Z") == "02:30 BST"
    assert ev.starts.astimezone(UTC) == datetime(2024, 3, 31, 1, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "zone, expected_utc",
    [
        ("America/Denver", datetime(2024, 4, 10, 15, 0, tzinfo=UTC)),
        ("MDT", datetime(2024, 4, 10, 15, 0, tzinfo=UTC)),
        ("UTC+2", datetime(2024, 4, 10, 7, 0, tzinfo=UTC)),
    ],
)
def test_front_matter_event_timezone(zone, expected_utc):
    text = (
        f"---\ntitle: T\ndate: 2024-04-01\nevent:\n  title: E\n  starts: 2024-04-10T09:00\n  timezone: {zone}\n---\nx\n"
    )
    ev = parse_markdown(text, source="ep.md", tz=LONDON).event
    assert ev.starts.astimezone(UTC) == expected_utc


def test_front_matter_unknown_timezone_names_the_field():
    text = "---\ntitle: T\ndate: 2024-04-01\nevent:\n  title: E\n  starts: 2024-04-10T09:00\n  timezone: IST\n---\nx\n"
    with pytest.raises(EpisodeError) as info:
        parse_markdown(text, source="ep.md", tz=LONDON)
    assert "field 'event.timezone'" in str(info.value) and "ambiguous" in str(info.value)


def test_time_span_reports_the_zone_written():
    span = parse_time_span("Thursday 11 January 2024, 12.30pm – 1.30pm (GMT)")
    assert span.start == time(12, 30) and span.zone.tzname(None) == "GMT"


@pytest.mark.parametrize("when", ["9am – 10am IST", "9am – 10am XST"])
def test_render_with_a_bad_zone_is_one_line_and_exit_2(tmp_path, when):
    path = tmp_path / "ep.txt"
    path.write_text(page(when))
    proc = cli("render", path, "--out", tmp_path / "out")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and f"{path}: line 11:" in proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize(
    "when, day, labels",
    [
        ("9am – 10.30am MDT", "10 April 2024", ("MDT", "MDT")),
        ("6pm – 8pm", "10 April 2024", ("BST", "BST")),
        ("11pm – 3am", "26 October 2024", ("BST", "GMT")),
        ("9am – 10am PT", "10 July 2024", ("PDT", "PDT")),
        ("18:00-20:00 UTC+2", "10 January 2024", ("UTC+2", "UTC+2")),
    ],
)
def test_a_stored_event_keeps_its_zone_names(tmp_path, when, day, labels):
    from worker.episodes import Episode

    path = tmp_path / "ep.txt"
    path.write_text(page(when, day))
    ep = load_episode(path, LONDON)
    back = Episode.from_json(ep.to_json())
    assert back == ep
    assert (back.event.starts.strftime("%Z"), back.event.ends.strftime("%Z")) == labels
    assert back.event.ends.astimezone(UTC) == ep.event.ends.astimezone(UTC)


def _event_lines() -> list[tuple[str, str, str, str, str]]:
    rows = []
    for line in (FIXTURES / "episodes" / "event-lines.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            rows.append(tuple(part.strip() for part in line.split("|")))
    return rows


@pytest.mark.parametrize("when, day, starts, ends, all_day", _event_lines())
def test_event_lines_as_people_write_them(tmp_path, when, day, starts, ends, all_day):
    path = tmp_path / "ep.txt"
    text = page(when, day) if day else page(when, "").replace(f"{when}\n\n", f"{when}\n")
    path.write_text(text)
    ev = load_episode(path, LONDON).event
    assert ev is not None, "the event was not read"
    utc = lambda dt: dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M") if dt else "-"  # noqa: E731
    assert (utc(ev.starts), utc(ev.ends), "yes" if ev.all_day else "no") == (starts, ends, all_day)


@pytest.mark.parametrize("when", ["6pm – 8pm Mars/Olympus", "6pm – 8pm (Europe/Atlantis)"])
def test_an_unknown_zone_name_is_an_error_naming_the_line(tmp_path, when):
    path = tmp_path / "ep.txt"
    path.write_text(page(when))
    with pytest.raises(EpisodeError, match="unknown time zone") as info:
        load_episode(path, LONDON)
    assert f"{path}: line 11:" in str(info.value)


@pytest.mark.parametrize(
    "when", ["6pm – 8pm Central Library", "6pm – 8pm Pacific Room, Hall 2", "6pm – 8pm party time"]
)
def test_place_names_after_the_times_are_not_zones(tmp_path, when):
    ev = event(tmp_path, when)
    assert ev.starts.astimezone(UTC) == datetime(2024, 4, 10, 17, 0, tzinfo=UTC)


def test_a_multi_day_event_is_all_day_on_every_day_in_the_calendar(tmp_path):
    from worker.episodes import Episode

    path = tmp_path / "ep.txt"
    path.write_text(page("10 – 12 April 2024", "").replace("10 – 12 April 2024\n\n", "10 – 12 April 2024\n"))
    ev = load_episode(path, LONDON).event
    assert ev.all_day and ev.starts.date().isoformat() == "2024-04-10" and ev.ends.date().isoformat() == "2024-04-12"
    assert ev.finishes.astimezone(LONDON) == datetime(2024, 4, 13, 0, 0, tzinfo=LONDON)  # over after the last day
    back = Episode.from_json(load_episode(path, LONDON).to_json()).event
    assert back == ev


def test_front_matter_dates_alone_make_an_all_day_event_over_several_days():
    ep = parse_markdown(
        "---\ntitle: T\ndate: 2024-01-10\nevent:\n  title: Camp\n"
        "  starts: 2024-01-20\n  ends: 2024-01-22\n---\nBody.\n",
        source="e.md",
        tz=LONDON,
    )
    assert ep.event.all_day and ep.event.starts.date().isoformat() == "2024-01-20"
    assert ep.event.ends.date().isoformat() == "2024-01-22"


def test_a_multi_day_event_reaches_the_banner_and_the_calendar_file(tmp_path):
    from worker.digest import build_digest
    from worker.settings import get_settings

    path = tmp_path / "ep.txt"
    path.write_text(page("30 April – 2 May 2024", "").replace("30 April – 2 May 2024\n\n", "30 April – 2 May 2024\n"))
    ep = load_episode(path, LONDON)
    digest = build_digest(ep, get_settings(), as_of=datetime(2024, 4, 3, 9, tzinfo=UTC))
    assert digest.event.weekday_date == "Tuesday 30 April – Thursday 2 May 2024" and digest.event.time_range == ""
    ics = digest.ics.decode() if isinstance(digest.ics, bytes) else str(digest.ics)
    assert "DTSTART;VALUE=DATE:20240430" in ics and "DTEND;VALUE=DATE:20240503" in ics

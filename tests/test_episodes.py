from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from worker.episodes import Episode, load_episode, parse_date, parse_time_range
from worker.errors import EpisodeError
from worker.text import safe_url

from .conftest import FIXTURES
from .factories import cli

TZ = ZoneInfo("Europe/London")


def write(tmp_path, name, content):
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return p


def test_sample_page(seed_path):
    ep = load_episode(seed_path, TZ)
    assert ep.title == "Public Sector Technology Roundup: Episode 3"
    assert ep.date == date(2023, 11, 23)
    assert ep.number == 3
    assert ep.slug == "2023-11-23-public-sector-technology-roundup-episode-3"
    assert ep.intro[0].startswith("A bit later than planned")
    assert len(ep.intro) == 1
    ev = ep.event
    assert ev is not None
    assert ev.title == "A Whole Team Approach to Effective Product Discovery: Panel Discussion"
    assert ev.heading == "Product Panel Event"
    assert ev.banner_alt == "Product Panel Nov email header"
    assert ev.starts == datetime(2023, 11, 29, 17, 30, tzinfo=TZ)
    assert ev.ends == datetime(2023, 11, 29, 19, 30, tzinfo=TZ)
    assert ev.venue == "Codurance, 3 Sutton Lane, 3rd Floor, London EC1M 5PU"
    assert [s.name for s in ev.speakers] == ["Rachel Lyons", "Mash Badar", "Sarah Timms", "Andy Curry", "David Heath"]
    assert ev.speakers[0].role == "Principal Product Manager, Codurance"
    assert len(ev.description) == 2
    assert ep.links == ()
    assert ep.transcript[0].startswith("Hello and welcome")
    assert ep.transcript[-1].startswith("That’s a wrap")
    assert len(ep.transcript) == 27
    # non-breaking spaces are gone from parsed text
    assert not any("\u00a0" in p for p in ep.transcript)


def test_round_trips_through_json(seed_path):
    ep = load_episode(seed_path, TZ)
    assert Episode.from_json(ep.to_json()) == ep


NOISY = (
    "\ufeffMy Show: Episode 12\r\n\r\n"
    "Thursday 7th March 2024\r\n\r\n"
    "Intro\u00a0paragraph with “curly quotes” — and dashes.\r\n\r\n"
    "Spring Meetup Event\r\n\r\n"
    "Meetup header image\r\n\r\n"
    "Data in Government: a meetup\r\n\r\n"
    "18:00 - 20:30\r\n"
    "14 March 2024\r\n"
    "The Venue, 1 Road, Leeds – https://tickets.example.com/e/42\r\n\r\n"
    "Come along.\r\n\r\n"
    "Speakers: Ada Lovelace, Analyst; Alan Turing\r\n\r\n"
    "Links & Sources\r\n\r\n"
    "Report one – https://example.gov.uk/report-1\r\n"
    "Report two - https://example.gov.uk/report-2\r\n"
    "Report three: https://example.gov.uk/report-3\r\n"
    "https://example.org/bare\r\n"
    "Blog post about things\r\n"
    "https://blog.example.com/post\r\n\r\n"
    "Welcome to the show. This is the transcript.\r\n\r\n"
    "Second paragraph.\r\n"
)


def test_noisy_page_with_links_and_signup(tmp_path):
    ep = load_episode(write(tmp_path, "ep.txt", NOISY), TZ)
    assert ep.title == "My Show: Episode 12"
    assert ep.date == date(2024, 3, 7)
    assert ep.intro == ("Intro paragraph with “curly quotes” — and dashes.",)
    ev = ep.event
    assert ev.title == "Data in Government: a meetup"
    assert ev.starts == datetime(2024, 3, 14, 18, 0, tzinfo=TZ)
    assert ev.ends == datetime(2024, 3, 14, 20, 30, tzinfo=TZ)
    assert ev.signup_url == "https://tickets.example.com/e/42"
    assert ev.venue == "The Venue, 1 Road, Leeds"
    assert [(s.name, s.role) for s in ev.speakers] == [("Ada Lovelace", "Analyst"), ("Alan Turing", "")]
    assert [lk.url for lk in ep.links] == [
        "https://example.gov.uk/report-1",
        "https://example.gov.uk/report-2",
        "https://example.gov.uk/report-3",
        "https://example.org/bare",
        "https://blog.example.com/post",
    ]
    assert ep.links[0].title == "Report one"
    assert ep.links[4].title == "Blog post about things"
    assert ep.transcript == ("Welcome to the show. This is the transcript.", "Second paragraph.")


def test_page_without_event_or_links(tmp_path):
    ep = load_episode(write(tmp_path, "ep.txt", "Title\n\n1 Jan 2024\n\nIntro.\n\nTranscript one.\n\nTwo.\n"), TZ)
    assert ep.event is None and ep.links == ()
    assert ep.intro == ("Intro.",)
    assert ep.transcript == ("Transcript one.", "Two.")


def test_event_without_caption_and_without_speakers(tmp_path):
    text = (
        "Show 5\n\n2 Feb 2024\n\nIntro.\n\nWebinar Event\n\nHow to test\n\n"
        "12.30pm – 1.30pm\n9 February 2024\nOnline\n\nAbout it.\n\nLinks & Sources\n\nThe transcript.\n"
    )
    ep = load_episode(write(tmp_path, "ep.txt", text), TZ)
    assert ep.event.title == "How to test"
    assert ep.event.banner_alt == ""
    assert ep.event.starts.hour == 12 and ep.event.ends.hour == 13
    assert ep.event.venue == "Online"
    assert ep.event.description == ("About it.",)
    assert ep.transcript == ("The transcript.",)


def test_event_heading_without_date_stays_intro(tmp_path):
    text = "Show\n\n2 Feb 2024\n\nIntro.\n\nNo Event\n\nJust words here.\n\nLinks & Sources\n\nTranscript.\n"
    ep = load_episode(write(tmp_path, "ep.txt", text), TZ)
    assert ep.event is None
    assert ep.intro == ("Intro.", "No Event", "Just words here.")
    assert ep.transcript == ("Transcript.",)
    assert ep.warnings


@pytest.mark.parametrize(
    "text, expected",
    [
        ("23 Nov 2023", date(2023, 11, 23)),
        ("29 November 2023", date(2023, 11, 29)),
        ("Wednesday 29th November 2023", date(2023, 11, 29)),
        ("Nov 23, 2023", date(2023, 11, 23)),
        ("2023-11-23", date(2023, 11, 23)),
        ("23/11/2023", date(2023, 11, 23)),
        ("31 Feb 2023", None),
        ("Hello world", None),
        ("23 Foo 2023", None),
    ],
)
def test_parse_date(text, expected):
    assert parse_date(text) == expected


@pytest.mark.parametrize(
    "text, start, end",
    [
        ("5.30pm – 7.30pm", (17, 30), (19, 30)),
        ("18:00-20:00", (18, 0), (20, 0)),
        ("6 to 8pm", (18, 0), (20, 0)),
        ("11am – 1pm", (11, 0), (13, 0)),
        ("at 6.30pm", (18, 30), None),
    ],
)
def test_parse_time_range(text, start, end):
    s, e = parse_time_range(text)
    assert (s.hour, s.minute) == start
    assert ((e.hour, e.minute) if e else None) == end


@pytest.mark.parametrize(
    "url, ok",
    [
        ("https://a.example/x", True),
        ("http://a.example", True),
        ("mailto:a@b.example", True),
        ("javascript:alert(1)", False),
        ("JaVaScRiPt:alert(1)", False),
        ("data:text/html,<x>", False),
        ("//evil.example", False),
        ("/relative", False),
        ('https://a.example/"onmouseover=x', False),
        ("vbscript:x", False),
    ],
)
def test_safe_url(url, ok):
    assert bool(safe_url(url)) is ok


MARKDOWN = """---
title: "Episode 4: Markdown"
date: 2024-01-10
number: 4
summary: A short summary.
episode_url: https://podcast.example.com/4
audio_url: https://cdn.example.com/4.mp3
event:
  title: Winter Social
  starts: 2024-01-20T18:00
  ends: 2024-01-20T21:00
  venue: The Pub
  signup_url: https://tickets.example.com/social
  banner_image: https://cdn.example.com/banner.png
  banner_alt: People at a social
  speakers:
    - name: Grace Hopper
      role: Admiral
links:
  - title: A link
    url: https://example.com/a
  - title: Bad link
    url: javascript:alert(1)
---
# Transcript

Hello **there**, this is [the show](https://x.example).

Second paragraph.
"""


def test_markdown_front_matter(tmp_path):
    ep = load_episode(write(tmp_path, "ep4.md", MARKDOWN), TZ)
    assert ep.title == "Episode 4: Markdown"
    assert ep.date == date(2024, 1, 10)
    assert ep.number == 4
    assert ep.summary == "A short summary."
    assert ep.audio_url == "https://cdn.example.com/4.mp3"
    assert ep.event.starts == datetime(2024, 1, 20, 18, 0, tzinfo=TZ)
    assert ep.event.banner_image == "https://cdn.example.com/banner.png"
    assert ep.event.speakers[0].name == "Grace Hopper"
    assert [lk.url for lk in ep.links] == ["https://example.com/a"]  # javascript: dropped
    assert ep.transcript == ("Transcript", "Hello there, this is the show.", "Second paragraph.")


@pytest.mark.parametrize(
    "content, needle",
    [
        (b"", "empty"),
        (b"   \n\n  ", "empty"),
        (b"\x00\x01\x02binary\x00", "binary"),
        ("Title\n\n23 Nov 2023\n\ncaf\xe9\n".encode("latin-1"), "not valid UTF-8"),
        (b"Only a title\n", "expected a date"),
        (b"Title\n\nnot a date\n\ntext\n", "line 3: expected the episode date"),
        (b"Title\n\n23 Nov 1066\n\ntext\n", "out of range"),
    ],
)
def test_bad_page_inputs(tmp_path, content, needle):
    path = write(tmp_path, "bad.txt", content)
    with pytest.raises(EpisodeError) as info:
        load_episode(path, TZ)
    assert needle in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "front, needle",
    [
        ("date: 2024-01-01\n", "field 'title': is required"),
        ("title: T\n", "field 'date': is required"),
        ("title: T\ndate: someday\n", "field 'date'"),
        ("title: T\ndate: 2024-01-01\nevent:\n  title: E\n  starts: tomorrow\n", "field 'event.starts'"),
        ("title: T\ndate: 2024-01-01\nnumber: three\n", "field 'number'"),
        ("title: [unclosed\n", "not valid YAML"),
        ("title: T\ndate: 2024-01-01\nlinks: nope\n", "field 'links'"),
    ],
)
def test_bad_markdown_names_the_field(tmp_path, front, needle):
    path = write(tmp_path, "bad.md", f"---\n{front}---\nbody\n")
    with pytest.raises(EpisodeError) as info:
        load_episode(path, TZ)
    assert needle in str(info.value)
    assert "bad.md" in str(info.value)


def test_title_with_line_breaks_and_controls_is_one_line(tmp_path):
    path = write(
        tmp_path, "ep.md", '---\ntitle: "Evil\\r\\nBcc: victim@example.com\\u0007"\ndate: 2024-01-01\n---\nx\n'
    )
    ep = load_episode(path, TZ)
    assert ep.title == "Evil Bcc: victim@example.com"


INLINE = (
    "Show: Episode 4\r\n\r\n14 Dec 2023\r\n\r\nWelcome back.\r\n\r\nSecond intro paragraph.\r\n\r\n"
    "Webinar Event\r\n\r\nWebinar header image\r\n\r\nData Ethics in Practice\r\n\r\n"
    "Thursday 11 January 2024, 12.30pm – 1.30pm\r\nOnline – register at https://events.example.com/e\r\n\r\n"
    "Join us online.\r\n\r\nSpeakers: Jane Doe, CTO, Acme; John Roe, Head of Data\r\n\r\n"
    "Links & Sources\r\n\r\nCDDO blog: https://cddo.blog.gov.uk/post-1\r\n\r\nTranscript.\r\n"
)


def test_date_and_time_on_one_line_and_a_signup_on_the_venue_line(tmp_path):
    ep = load_episode(write(tmp_path, "ep4.txt", INLINE), TZ)
    assert ep.intro == ("Welcome back.", "Second intro paragraph.")
    ev = ep.event
    assert ev.title == "Data Ethics in Practice" and ev.banner_alt == "Webinar header image"
    assert ev.starts == datetime(2024, 1, 11, 12, 30, tzinfo=TZ) and ev.ends == datetime(2024, 1, 11, 13, 30, tzinfo=TZ)
    assert ev.venue == "Online" and ev.signup_url == "https://events.example.com/e"
    assert ev.description == ("Join us online.",)
    assert [lk.title for lk in ep.links] == ["CDDO blog"] and ep.transcript == ("Transcript.",)


def test_date_before_time_in_24_hour_form_without_caption(tmp_path):
    text = (
        "Roundup Episode 5\n\nWednesday 17th January 2024\n\nIntro.\n\nRoundtable Event\n\n"
        "AI in Local Government\n\n18 January 2024\n18:00 – 20:00\nThe Guildhall, London\n\n"
        "Description.\n\nSpeakers:\u00a0Ada Lovelace, Analyst\n\nLinks and Sources\n\nTranscript one.\n"
    )
    ev = load_episode(write(tmp_path, "ep5.txt", text), TZ).event
    assert ev.title == "AI in Local Government" and ev.banner_alt == ""
    assert ev.starts == datetime(2024, 1, 18, 18, 0, tzinfo=TZ) and ev.venue == "The Guildhall, London"


# -- YAML front matter keeps what the author wrote (issue 11, case 9) -----------------------


def test_yaml_scalars_stay_as_written():
    from .conftest import FIXTURES

    ep = load_episode(FIXTURES / "episodes" / "yaml-surprises.md", TZ)
    assert ep.title == "No" and ep.number == 10 and ep.summary == "3.10"
    assert ep.guid == "1e3" and ep.slug == "on"
    assert ep.event.title == "yes" and ep.event.venue == "Null Island"


@pytest.mark.parametrize(
    "line, field, value",
    [
        ("title: No", "title", "No"),
        ("title: yes", "title", "yes"),
        ("title: off", "title", "off"),
        ("title: 3.10", "title", "3.10"),
        ("title: 1_000", "title", "1_000"),
        ("title: 0o17", "title", "0o17"),
        ("title: 12:30", "title", "12:30"),
        ("title: 2024-01-10", "title", "2024-01-10"),
        ("title: .inf", "title", ".inf"),
        ("title: '007'", "title", "007"),
        ("number: 010", "number", 10),
        ("number: 09", "number", 9),
        ("number: '12'", "number", 12),
        ("number: 4", "number", 4),
    ],
)
def test_yaml_surprises_keep_their_text(tmp_path, line, field, value):
    front = {"title": "title: T", "number": ""}
    front[field] = line
    path = write(tmp_path, "ep.md", f"---\n{front['title']}\ndate: 2024-01-01\n{front['number']}\n---\nx\n")
    assert getattr(load_episode(path, TZ), field) == value


@pytest.mark.parametrize(
    "line", ["number: 0x1A", "number: 1:20", "number: 1_000", "number: 4.0", "number: yes", "number: -3", "number: [1]"]
)
def test_a_number_that_is_not_a_whole_decimal_names_the_field(tmp_path, line):
    path = write(tmp_path, "ep.md", f"---\ntitle: T\ndate: 2024-01-01\n{line}\n---\nx\n")
    with pytest.raises(EpisodeError) as info:
        load_episode(path, TZ)
    assert "field 'number'" in str(info.value) and "ep.md" in str(info.value)


@pytest.mark.parametrize(
    "front, expected",
    [
        ("date: 2024-01-10", date(2024, 1, 10)),
        ("date: 2024-01-10T21:00:00", date(2024, 1, 10)),
        ("date: '10 January 2024'", date(2024, 1, 10)),
    ],
)
def test_yaml_dates_without_implicit_timestamps(tmp_path, front, expected):
    path = write(tmp_path, "ep.md", f"---\ntitle: T\n{front}\n---\nx\n")
    assert load_episode(path, TZ).date == expected


def test_yaml_event_date_alone_is_all_day_and_title_null_is_required(tmp_path):
    path = write(
        tmp_path, "ep.md", "---\ntitle: T\ndate: 2024-01-01\nevent:\n  title: E\n  starts: 2024-01-20\n---\nx\n"
    )
    ev = load_episode(path, TZ).event
    assert ev.all_day and ev.starts == datetime(2024, 1, 20, 0, 0, tzinfo=TZ)
    with pytest.raises(EpisodeError, match="field 'title': is required"):
        load_episode(write(tmp_path, "n.md", "---\ntitle: null\ndate: 2024-01-01\n---\nx\n"), TZ)


def test_front_matter_highlights(tmp_path):
    from .conftest import FIXTURES

    ep = load_episode(FIXTURES / "episodes" / "front-matter-event.md", TZ)
    assert ep.highlights == ("Why open data needs maintainers", "What a panel can change")
    path = write(tmp_path, "bad.md", "---\ntitle: T\ndate: 2024-01-01\nhighlights: just one string\n---\nx\n")
    with pytest.raises(EpisodeError, match="field 'highlights'"):
        load_episode(path, TZ)
    assert load_episode(write(tmp_path, "none.md", "---\ntitle: T\ndate: 2024-01-01\n---\nx\n"), TZ).highlights == ()


def test_every_part_of_an_extreme_markdown_episode_is_bounded(tmp_path):
    links = "\n".join(f'  - {{title: "{"T" * 600}", url: "https://example.org/{"u" * 1900}{i}"}}' for i in range(300))
    speakers = "\n".join(f'    - {{name: "{"N" * 300}", role: "{"R" * 400}"}}' for _ in range(50))
    description = ("D" * 3000 + "\n\n") * 20
    highlights = "\n".join('  - "' + "H" * 1000 + '"' for _ in range(20))
    text = (
        f'---\ntitle: "{"Title " * 200}"\ndate: 2024-01-01\nsummary: "{"summary " * 1000}"\nevent:\n'
        f'  title: "{"E" * 1000}"\n  starts: 2030-01-20T18:00\n  venue: "{"V" * 1000}"\n'
        f"  description: |\n    {description.replace(chr(10), chr(10) + '    ')}\n  speakers:\n{speakers}\n"
        f"links:\n{links}\nhighlights:\n{highlights}\n---\n" + ("word " * 5000 + "\n\n") * 50
    )
    ep = load_episode(write(tmp_path, "big.md", text), TZ)
    assert len(ep.title) <= 300 and len(ep.summary) <= 1000
    assert len(ep.intro) <= 5 and all(len(p) <= 1000 for p in ep.intro)
    assert len(ep.links) == 200 and all(len(lk.title) <= 200 and len(lk.url) <= 2000 for lk in ep.links)
    assert len(ep.highlights) == 5 and all(len(h) <= 300 for h in ep.highlights)
    ev = ep.event
    assert len(ev.title) <= 300 and len(ev.venue) <= 300 and len(ev.speakers) == 30
    assert all(len(s.name) <= 120 and len(s.role) <= 240 for s in ev.speakers)
    assert len(ev.description) <= 5 and all(len(p) <= 1000 for p in ev.description)
    assert all(len(p) <= 5000 for p in ep.transcript)
    assert sum(map(len, ep.transcript)) >= 50 * 5000 * 5 - 1000  # split, not cut: the web page keeps it all


def _yaml_shapes() -> list[tuple[str, str, str]]:
    rows = []
    for line in (FIXTURES / "episodes" / "yaml-shapes.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            field, text, expected = (part.strip() for part in line.split(" | "))
            rows.append((field, text, expected))
    return rows


def _read_shape(ep, field: str) -> str:  # noqa: ANN001
    ev = ep.event
    values = {
        "links": lambda: ep.links[0].title,
        "venue": lambda: ev.venue,
        "description": lambda: "|".join(ev.description),
        "speakers": lambda: f"{ev.speakers[0].name}, {ev.speakers[0].role}",
        "number": lambda: str(ep.number),
    }
    return values.get(field, lambda: str(getattr(ep, field, None) or getattr(ev, field, None)))()


@pytest.mark.parametrize("field, line, expected", _yaml_shapes())
def test_front_matter_shapes_give_the_value_or_an_error_naming_the_field(tmp_path, field, line, expected):
    """A text field never becomes the repr of a list or a mapping: the value as written, or an
    error naming the field (exit 2 through the CLI, one line)."""
    path = tmp_path / "ep.md"
    path.write_text(f"---\ntitle: T\ndate: 2024-01-10\n{line}\n---\nBody.\n")
    if expected.startswith("error "):
        with pytest.raises(EpisodeError) as info:
            load_episode(path, ZoneInfo("Europe/London"))
        assert f"field '{expected.removeprefix('error ')}'" in str(info.value)
    else:
        assert _read_shape(load_episode(path, ZoneInfo("Europe/London")), field) == expected


@pytest.mark.parametrize("line", ["slug: [a]", "event: {title: T, starts: 2024-01-20, speakers: [{name: [a]}]}"])
def test_a_wrong_shape_through_the_cli_is_one_line_and_exit_2(tmp_path, line):
    path = tmp_path / "ep.md"
    path.write_text(f"---\ntitle: T\ndate: 2024-01-10\n{line}\n---\nBody.\n")
    proc = cli("render", str(path), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert f"{path}: field '" in proc.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "heading", ["Upcoming Events", "Events", "Event details", "Event information", "Save the date!", "Live Event:"]
)
def test_event_headings_as_shows_write_them(tmp_path, heading):
    path = tmp_path / "ep.txt"
    path.write_text(
        f"Show: Ep 1\n\n3 April 2024\n\nIntro.\n\n{heading}\n\nA meetup\n\n6pm – 8pm\n10 April 2024\n"
        "The Hall, Leeds\n\nAbout it.\n\nLinks & Sources\n\nReport – https://a.example/x\n\nTranscript.\n"
    )
    ep = load_episode(path, ZoneInfo("Europe/London"))
    assert ep.event is not None and ep.event.title == "A meetup" and ep.event.venue == "The Hall, Leeds"
    assert ep.intro == ("Intro.",)


@pytest.mark.parametrize(
    "text",
    ["23.11.2023", "23-11-2023", "2023/11/23", "23rd of November 2023", "Thurs. 23 Nov 2023", "Thu, 23 Nov. 2023"],
)
def test_more_date_lines_as_people_write_them(text):
    assert parse_date(text) == date(2023, 11, 23)

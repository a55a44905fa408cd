"""Text that feeds carry (issue 11, cases 5, 7, 8; issue 12): dates in the list's zone, HTML-typed
fields turned into text once, show notes that keep their lines, bounded episodes, and one
event whatever form the show notes take."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from email import message_from_bytes, policy
from zoneinfo import ZoneInfo

import feedparser
import pytest

from worker.episodes import field_text, load_episode, read_feed_item
from worker.message import Recipient, compose

from .conftest import FIXTURES

LONDON = ZoneInfo("Europe/London")
TEXT = FIXTURES / "feeds" / "text"
EPISODES = FIXTURES / "episodes"


def entries(xml: bytes | str):  # noqa: ANN201
    return feedparser.parse(xml.encode() if isinstance(xml, str) else xml, sanitize_html=True).entries


def rss_item(
    notes: str, title: str = "Episode 7: Plain notes", pub: str = "Mon, 05 Feb 2024 09:00:00 +0000", cdata: bool = True
) -> str:
    body = f"<![CDATA[{notes}]]>" if cdata else notes
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>Made-up Show</title><item>'
        f"<title>{title}</title><guid>plain-7</guid><pubDate>{pub}</pubDate>"
        f"<description>{body}</description></item></channel></rss>"
    )


# -- dates in the list's zone (case 5) -------------------------------------------------------


@pytest.mark.parametrize(
    "tz, expected",
    [
        ("America/Los_Angeles", date(2024, 1, 1)),  # 20:00 PST on Monday 1 January
        ("Europe/London", date(2024, 1, 2)),  # 04:00 GMT on Tuesday
        ("Asia/Tokyo", date(2024, 1, 2)),
    ],
)
def test_feed_dates_are_taken_in_the_list_zone(tz, expected):
    (entry,) = entries((TEXT / "pubdate-offset.rss").read_bytes())
    ep = read_feed_item(entry, feed_url="https://show.example.org/feed", tz=ZoneInfo(tz))
    assert ep.date == expected and ep.slug == f"{expected.isoformat()}-evening-episode"


def test_a_late_utc_time_is_the_next_day_east_of_utc():
    xml = rss_item("<p>x</p>", title="Late", pub="Sun, 31 Dec 2023 23:30:00 +0000")
    ep = read_feed_item(entries(xml)[0], feed_url="f", tz=ZoneInfo("Europe/Berlin"))
    assert ep.date == date(2024, 1, 1)


# -- HTML-typed fields (case 8) --------------------------------------------------------------


def test_an_html_typed_title_is_text_everywhere(settings):
    (entry,) = entries((TEXT / "html-title.rss").read_bytes())
    ep = read_feed_item(entry, feed_url="https://show.example.org/feed", tz=LONDON)
    assert ep.title == "Episode 9 – Don’t panic: Q&A"
    assert ep.slug == "2024-01-01-episode-9-dont-panic-q-a"
    assert ep.intro == ("We answer your questions – all of them.",)
    template = compose(ep, settings)
    html, text = template.personalised(Recipient("reader@example.org", "Reader"))
    assert "Q&amp;A" in html and "&amp;amp;" not in html and "&amp;#" not in html and "&#8211;" not in html
    assert "Episode 9 – Don’t panic: Q&A" in text
    raw, _ = template.build(Recipient("reader@example.org", "Reader"))
    assert message_from_bytes(raw, policy=policy.default)["Subject"] == "Episode 9 – Don’t panic: Q&A"


@pytest.mark.parametrize(
    "title, expected",
    [
        ("<![CDATA[Tom &amp; Jerry]]>", "Tom & Jerry"),
        ("<![CDATA[<b>Bold</b> move]]>", "Bold move"),
        ("<![CDATA[Caf&eacute; &lt;3]]>", "Café <3"),
        ("Plain &amp; simple", "Plain & simple"),
        ("A &lt; B", "A < B"),
        ("<![CDATA[<i>Italic</i> &amp; <em>more</em>]]>", "Italic & more"),
        ("<![CDATA[<p>Para</p><p>graphs</p>]]>", "Para graphs"),
        ("<![CDATA[Two&nbsp;&nbsp;spaces]]>", "Two spaces"),
    ],
)
def test_every_html_typed_title_shape(title, expected):
    (entry,) = entries(rss_item("<p>x</p>", title=title))
    assert read_feed_item(entry, feed_url="f", tz=LONDON).title == expected


def test_feed_title_and_summary_fields_are_text():
    parsed = feedparser.parse((TEXT / "html-title.rss").read_bytes(), sanitize_html=True)
    assert field_text(parsed.feed, "title") == "Tom & Jerry’s Show"
    assert field_text(parsed.entries[0], "summary") == "We answer your questions – all of them."


def test_atom_html_and_text_typed_titles():
    atom = (
        '<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>S</title>'
        "<entry><id>urn:x:1</id><updated>2024-01-01T09:00:00Z</updated>"
        '<title type="html">Q&amp;amp;A &amp;#8211; live</title><summary>s</summary></entry>'
        "<entry><id>urn:x:2</id><updated>2024-01-01T09:00:00Z</updated>"
        '<title type="text">Q&amp;A &lt;b&gt;</title><summary>s</summary></entry></feed>'
    )
    got = [read_feed_item(e, feed_url="f", tz=LONDON).title for e in entries(atom)]
    assert got == ["Q&A – live", "Q&A <b>"]


# -- show notes keep their lines; everything bounded (case 7) --------------------------------


def test_plain_text_notes_keep_the_page_layout():
    (entry,) = entries((TEXT / "plain-notes.rss").read_bytes())
    ep = read_feed_item(entry, feed_url="https://show.example.org/feed", tz=LONDON)
    assert ep.intro == ("A short intro to episode seven.",)
    assert ep.event is not None and ep.event.title == "Data in the Open: a panel"
    assert ep.event.venue == "The Old Library, 1 Example Street, Leeds"
    assert [lk.url for lk in ep.links] == ["https://data.example.org/report", "https://blog.example.org/post"]
    assert ep.transcript == ("Welcome to the show. This is the transcript.", "Second transcript paragraph.")


def test_huge_plain_notes_make_a_small_email(settings):
    intro = "\n".join(f"Intro line {i} " + "words " * 30 for i in range(600))  # ~120 KB, no tags
    notes = (
        f"{intro}\n\nBig Event\n\nThe big one\n\n6pm – 8pm\n14 March 2030\nThe Hall\n\n"
        + "Description sentence here. " * 4000
        + "\n\nSpeakers: "
        + "; ".join(f"Person {i}, Role {i}" for i in range(200))
        + "\n\nLinks & Sources\n\n"
        + "\n".join(f"Link {i} – https://example.org/{i}" for i in range(500))
        + "\n\n"
        + "Transcript sentence goes on. " * 20000
    )
    (entry,) = entries(rss_item(notes, cdata=False))
    ep = read_feed_item(entry, feed_url="f", tz=LONDON)
    assert len(ep.intro) <= 5 and all(len(p) <= 1000 for p in ep.intro)
    assert len(ep.summary) <= 1000 and len(ep.event.description) <= 5
    assert all(len(p) <= 1000 for p in ep.event.description) and len(ep.event.speakers) <= 30
    assert len(ep.links) <= 200 and all(len(p) <= 5000 for p in ep.transcript)
    assert ep.warnings  # the editor is told what was cut
    html, text = compose(ep, settings).personalised(Recipient("reader@example.org", "Reader"))
    assert len(html.encode()) < 60_000 and len(text.encode()) < 60_000


@pytest.mark.parametrize("size", [10, 1000, 100_000])
def test_one_enormous_intro_paragraph_is_bounded(size):
    (entry,) = entries(rss_item("<p>" + "word " * size + "</p><p>Transcript.</p>"))
    ep = read_feed_item(entry, feed_url="f", tz=LONDON)
    assert len(ep.intro[0]) <= 1000 and len(ep.summary) <= 1000


# -- one event, whatever form the notes take (issue 12) -------------------------------------

LINES = [
    "A short intro to episode seven.",
    "",
    "Spring Panel Event",
    "",
    "Data in the Open: a panel",
    "",
    "6pm – 8pm",
    "14 March 2024",
    "The Old Library, 1 Example Street, Leeds",
    "",
    "Come and hear the panel.",
    "",
    "Speakers: Ada Example, Analyst; Bo Sample, Engineer",
    "",
    "Links &amp; Sources",
    "",
    "Open data report – https://data.example.org/report",
    "Blog post – https://blog.example.org/post",
    "",
    "Welcome to the show. This is the transcript.",
    "",
    "Second transcript paragraph.",
]


def notes_p_per_line() -> str:
    return "".join(f"<p>{ln}</p>" for ln in LINES if ln)


def notes_br() -> str:
    return "<br>".join(LINES)


def notes_p_and_br() -> str:
    paras, cur = [], []
    for ln in [*LINES, ""]:
        if ln:
            cur.append(ln)
        elif cur:
            paras.append("<br/>\n".join(cur))
            cur = []
    return "".join(f"<p>{p}</p>\n" for p in paras)


def notes_plain() -> str:
    return "\n".join(LINES)


def expected_event():  # noqa: ANN201
    from worker.episodes import Event, Speaker

    tz = LONDON
    return Event(
        title="Data in the Open: a panel",
        starts=datetime(2024, 3, 14, 18, 0, tzinfo=tz),
        ends=datetime(2024, 3, 14, 20, 0, tzinfo=tz),
        venue="The Old Library, 1 Example Street, Leeds",
        speakers=(Speaker(name="Ada Example", role="Analyst"), Speaker(name="Bo Sample", role="Engineer")),
        description=("Come and hear the panel.",),
        heading="Spring Panel Event",
    )


@pytest.mark.parametrize("form", [notes_p_per_line, notes_br, notes_p_and_br, notes_plain])
def test_the_same_event_from_every_form_of_show_notes(form):
    (entry,) = entries(rss_item(form(), cdata=form is not notes_plain))
    ep = read_feed_item(entry, feed_url="f", tz=LONDON)
    assert ep.event == expected_event()
    assert ep.intro == ("A short intro to episode seven.",)
    assert [lk.title for lk in ep.links] == ["Open data report", "Blog post"]
    assert ep.transcript[-1] == "Second transcript paragraph."


@pytest.mark.parametrize("name", ["page-event.txt", "front-matter-event.md"])
def test_the_same_event_from_a_page_and_from_front_matter(name):
    ep = load_episode(EPISODES / name, LONDON)
    assert ep.event == expected_event()
    assert [lk.url for lk in ep.links] == ["https://data.example.org/report", "https://blog.example.org/post"]


def test_the_fixture_feed_gives_the_same_event():
    (entry,) = entries((TEXT / "plain-notes.rss").read_bytes())
    assert read_feed_item(entry, feed_url="f", tz=LONDON).event == expected_event()


def test_every_form_gives_the_same_banner_and_calendar(settings):
    from worker.digest import build_digest

    as_of = datetime(2024, 2, 6, 9, tzinfo=LONDON)
    eps = [load_episode(EPISODES / "page-event.txt", LONDON), load_episode(EPISODES / "front-matter-event.md", LONDON)]
    eps += [
        read_feed_item(entries(rss_item(f(), cdata=f is not notes_plain))[0], feed_url="f", tz=LONDON)
        for f in (notes_p_per_line, notes_br, notes_plain)
    ]
    digests = [build_digest(ep, settings, as_of=as_of) for ep in eps]
    banners = [dataclasses.asdict(d.event) for d in digests]
    for b in banners:
        for key in [k for k in b if "url" in k]:
            b.pop(key)  # the web and calendar links name each episode's own slug
    assert all(b == banners[0] for b in banners[1:])
    assert banners[0]["venue"] == "The Old Library, 1 Example Street, Leeds"

    def when(ics: bytes) -> list[bytes]:
        return [ln for ln in ics.splitlines() if ln.startswith((b"DTSTART", b"DTEND", b"LOCATION", b"SUMMARY"))]

    assert all(when(d.ics) == when(digests[0].ics) for d in digests[1:])
    assert b"DTSTART:20240314T180000Z" in when(digests[0].ics)


def test_atom_content_typed_as_text_stays_text_with_its_lines():
    atom = (
        '<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>S</title>'
        "<entry><id>urn:x:1</id><updated>2024-01-01T09:00:00Z</updated><title>T</title>"
        '<content type="text">Use &lt;b&gt; for bold.\n\nSecond paragraph, a &amp; b.</content></entry></feed>'
    )
    ep = read_feed_item(entries(atom)[0], feed_url="f", tz=LONDON)
    assert ep.intro == ("Use <b> for bold.",) and ep.transcript == ("Second paragraph, a & b.",)


LABELLED = (
    "<p>A short intro to episode seven.</p><h3>Spring Panel Event</h3><p><strong>Data in the Open: a panel</strong></p>"
    "<p>When: Thursday 14 March 2024, 6pm – 8pm</p><p>Where: The Old Library, 1 Example Street, Leeds</p>"
    "<p>Come and hear the panel.</p><p>Speakers:</p><ul><li>Ada Example, Analyst</li><li>Bo Sample, Engineer</li></ul>"
    "<h3>Links &amp; Sources</h3><ul><li><a href='https://data.example.org/report'>Open data report</a></li>"
    "<li><a href='https://blog.example.org/post'>Blog post</a></li></ul><p>Welcome to the show.</p>"
)


def test_labelled_event_lines_and_a_bulleted_speakers_list_give_the_same_event():
    """'When:'/'Where:' labels and speakers as a list under 'Speakers:' are the same event."""
    (entry,) = entries(rss_item(LABELLED))
    ep = read_feed_item(entry, feed_url="f", tz=LONDON)
    assert ep.event == expected_event()
    assert [lk.title for lk in ep.links] == ["Open data report", "Blog post"]


@pytest.mark.parametrize("label", ["Where", "Venue", "Location", "Place"])
def test_a_venue_label_is_not_part_of_the_venue(label):
    notes = LABELLED.replace("Where:", f"{label}:")
    (entry,) = entries(rss_item(notes))
    assert read_feed_item(entry, feed_url="f", tz=LONDON).event.venue == "The Old Library, 1 Example Street, Leeds"


@pytest.mark.parametrize("depth", [300, 3000])
def test_deeply_nested_notes_keep_their_text(depth):
    """Editors leave tags unclosed; past the HTML parser's depth limit (256) the text must not
    vanish: the notes' lines are still read."""
    inner = "<p>Intro deep inside.</p><p>Links</p><p>Report – https://a.example/x</p>"
    notes = "<div>" * depth + inner + "</div>" * depth
    (entry,) = entries(rss_item(notes))
    ep = read_feed_item(entry, feed_url="f", tz=LONDON)
    assert ep.intro == ("Intro deep inside.",)
    assert [(lk.title, lk.url) for lk in ep.links] == [("Report", "https://a.example/x")]

"""The rendered email: structure, safety, mail-client support and contrast."""

from __future__ import annotations

import json
import re
from datetime import datetime

import lxml.html
import pytest

from worker import render as render_mod
from worker.episodes import load_episode
from worker.message import Recipient, compose
from worker.render import COLOUR_PAIRS, DARK, LIGHT

from .conftest import CANIEMAIL
from .factories import contrast

MARKDOWN_WITH_IMAGE = """---
title: With banner
date: 2024-01-10
event:
  title: Social
  starts: 2024-01-20T18:00
  banner_image: https://cdn.example.com/banner.png
  banner_alt: People at a social
  signup_url: https://tickets.example.com/s
links:
  - {title: One, url: "https://example.com/1"}
---
Hello there, this is a transcript sentence that is long enough to be a highlight maybe.
"""


# Before the sample's event: the banner is part of what these tests check.
SAMPLE_SEND_TIME = datetime(2023, 11, 23, 9, 0)


@pytest.fixture
def sample_html(settings, seed_path):
    ep = load_episode(seed_path, settings.tz)
    html, _ = compose(ep, settings, SAMPLE_SEND_TIME).personalised(Recipient("reader@example.org", "Reader"))
    return html


@pytest.fixture
def image_html(settings, tmp_path):
    p = tmp_path / "img.md"
    p.write_text(MARKDOWN_WITH_IMAGE)
    ep = load_episode(p, settings.tz)
    html, _ = compose(ep, settings, datetime(2024, 1, 10)).personalised(Recipient("reader@example.org", "Reader"))
    return html


def doc(html: str):
    return lxml.html.document_fromstring(html)


def test_document_head_rules(sample_html):
    assert sample_html.startswith("<!DOCTYPE html>")
    root = doc(sample_html)
    assert root.get("lang") == "en" and root.get("dir") == "ltr"
    metas = {
        (m.get("name") or m.get("http-equiv") or ("charset" if m.get("charset") else "")): m for m in root.iter("meta")
    }
    assert metas["charset"].get("charset").lower() == "utf-8"
    assert "width=device-width" in metas["viewport"].get("content")
    assert metas["color-scheme"].get("content") == "light dark"
    assert "x-apple-disable-message-reformatting" in metas
    assert "<!--[if mso]>" in sample_html and "<![endif]-->" in sample_html
    assert root.find(".//title").text == "Public Sector Technology Roundup: Episode 3"


def test_body_structure(sample_html):
    root = doc(sample_html)
    body = root.find("body")
    first = body[0]
    assert "preheader" in first.get("class")
    style = first.get("style")
    assert "max-height:0" in style.replace(" ", "") and "mso-hide:all" in style.replace(" ", "")
    assert first.text_content().startswith("A bit later than planned")
    article = body.find(".//div[@role='article']")
    assert article is not None and article.get("aria-label") == "Public Sector Technology Roundup: Episode 3"
    tables = list(root.iter("table"))
    assert tables and all(t.get("role") == "presentation" for t in tables)
    container = root.find(".//table[@class='container']")
    assert "max-width:600px" in container.get("style").replace(" ", "")
    assert 'width="600"' in sample_html  # the MSO ghost table
    assert not list(root.iter("script")) and not list(root.iter("link"))
    assert "<script" not in sample_html.lower()


def test_preheader_is_short_and_not_low_contrast(sample_html):
    root = doc(sample_html)
    pre = root.find("body")[0]
    text = pre.text_content().replace("\u034f", "").replace("\u200c", "").replace("\xa0", "").strip()
    assert 0 < len(text) <= 150
    assert "color" not in (pre.get("style") or "")  # text coloured like the background scores as spam


def test_links_and_images_are_absolute_https(sample_html, image_html):
    for html in (sample_html, image_html):
        root = doc(html)
        hrefs = [a.get("href") for a in root.iter("a")]
        assert hrefs
        for href in hrefs:
            assert href.startswith(("https://", "mailto:")), href
    imgs = list(doc(image_html).iter("img"))
    assert len(imgs) == 1
    img = imgs[0]
    assert img.get("src") == "https://cdn.example.com/banner.png"
    assert img.get("alt") == "People at a social"
    assert img.get("width") == "600"


GENERIC_FAMILIES = ("sans-serif", "serif", "monospace", "system-ui")


def _declarations(style: str) -> dict[str, str]:
    out = {}
    for decl in style.split(";"):
        if ":" in decl:
            prop, value = decl.split(":", 1)
            out[prop.strip().lower()] = value.strip()
    return out


def _font_of(el) -> str | None:  # noqa: ANN001
    """The font-family the element gets from its own style or an ancestor's, up to the nearest
    table cell: Outlook and some webmail reset fonts at a cell, so inheritance stops there."""
    while el is not None:
        fam = _declarations(el.get("style") or "").get("font-family")
        if fam:
            return fam
        if el.tag == "td":
            return None
        el = el.getparent()
    return None


def text_elements(html: str):
    """Every element in the body that holds text of its own (its text or a child's tail)."""
    body = doc(html).find("body")
    for el in body.iter():
        if not isinstance(el.tag, str) or el.tag in ("style", "script"):
            continue
        own = (el.text or "") + "".join(c.tail or "" for c in el)
        if own.replace("\u034f", "").replace("\u200c", "").replace("\xa0", "").strip():
            yield el


def test_every_text_element_gets_the_font_stack(sample_html, image_html):
    for html in (sample_html, image_html):
        elements = list(text_elements(html))
        assert len(elements) > 10
        for el in elements:
            if "preheader" in (el.get("class") or ""):
                continue  # hidden
            fam = _font_of(el)
            assert fam, (el.tag, el.get("class"), (el.text or "")[:40])
            families = [f.strip().strip("'\"") for f in fam.split(",")]
            assert families[-1] in GENERIC_FAMILIES, fam
            assert families[0] == "-apple-system" and "Segoe UI" in families, fam


def test_no_html_entity_inside_css(sample_html, image_html):
    for html in (sample_html, image_html):
        # attribute values as written in the source, before any HTML decoding
        for style in re.findall(r'\sstyle=(?:"([^"]*)"|\'([^\']*)\')', html):
            value = style[0] or style[1]
            assert "&" not in value, value
        for block in re.findall(r"<style[^>]*>(.*?)</style>", html, re.S):
            assert not re.search(r"&(#\d+|#x[0-9a-f]+|[a-z]+);", block, re.I), block[:200]


def test_font_check_can_fail():
    bad = (
        '<html><body><table><tr><td><p style="font-family:&#39;Segoe UI&#39;, Arial">x</p>'
        "<p>no font</p></td></tr></table></body></html>"
    )
    [first, second] = text_elements(bad)
    assert _font_of(second) is None
    assert _font_of(first).split(",")[-1].strip() not in GENERIC_FAMILIES


def test_mobile_and_dark_rules_survive_with_important(sample_html):
    styles = [s.text_content() for s in doc(sample_html).iter("style")]
    joined = "\n".join(styles)
    assert "@media screen and (max-width: 600px)" in joined
    assert "@media (prefers-color-scheme: dark)" in joined
    assert "[data-ogsc]" in joined
    dark = joined[joined.index("prefers-color-scheme: dark") :]
    assert f"background-color: {DARK['card']} !important" in dark
    # and the inlined (light) styles are on the elements themselves
    assert f"color:{LIGHT['text']}" in sample_html.replace(" ", "")


@pytest.mark.parametrize("palette", [LIGHT, DARK], ids=["light", "dark"])
def test_wcag_aa_contrast(palette):
    for fg, bg in COLOUR_PAIRS:
        assert contrast(palette[fg], palette[bg]) >= 4.5, (fg, bg, palette[fg], palette[bg])


def test_html_uses_only_palette_colours(sample_html, image_html):
    allowed = {c.lower() for c in [*LIGHT.values(), *DARK.values()]}
    for html in (sample_html, image_html):
        used = {_long_hex(c) for c in re.findall(r"#(?:[0-9a-fA-F]{6}|[0-9a-fA-F]{3})\b", html)}
        assert used and used <= allowed, used - allowed


def _long_hex(c: str) -> str:
    c = c.lower()
    return "#" + "".join(ch * 2 for ch in c[1:]) if len(c) == 4 else c


def test_contrast_helper_can_fail():
    assert contrast("#777777", "#888888") < 4.5


# -- caniemail ---------------------------------------------------------------------------

# Gmail, Apple Mail and Yahoo on every platform caniemail lists; Outlook.com for Outlook.
FAMILIES = {"gmail": None, "apple-mail": None, "yahoo": None, "outlook": {"outlook-com"}}
# Elements that make up the document shell, which webmail clients replace with their own; the
# issue requires them (doctype, lang, meta) whatever a client does with them.
SHELL = {"html", "head", "meta", "title", "style", "body"}
ELEMENT_FEATURES = {
    "a": None,
    "div": "html-div",
    "p": "html-p",
    "strong": "html-strong",
    "table": "html-table",
    "tr": "html-table",
    "td": "html-table",
    "h1": "html-h1-h6",
    "h2": "html-h1-h6",
    "h3": "html-h1-h6",
    "ul": "html-lists",
    "li": "html-lists",
    "img": "html-img",
    "span": "html-span",
    "br": None,
}
# Properties caniemail has no page for: `color` and `font-family` (CSS1, universal) and Outlook's
# own `mso-*`.
UNLISTED_OK = {"color", "font-family"}


def _supported(feature: dict) -> list[str]:
    problems = []
    for family, platforms in FAMILIES.items():
        for platform, versions in feature["stats"].get(family, {}).items():
            if platforms and platform not in platforms:
                continue
            latest = versions[sorted(versions)[-1]]
            if not latest.startswith(("y", "a")):
                problems.append(f"{family}/{platform}={latest}")
    return problems


def _property_features(prop: str, value: str, features: dict) -> list[str]:
    candidates = [f"css-{prop}", f"css-{re.sub(r'-(top|right|bottom|left)$', '', prop)}", f"css-{prop}-line"]
    found = [c for c in candidates if c in features][:1]
    if prop == "display" and value.strip() == "none":
        found.append("css-display-none")
    return found


def check_caniemail(html: str) -> list[str]:
    features = json.loads(CANIEMAIL.read_text())["features"]
    problems = []
    for el in doc(html).iter():
        if not isinstance(el.tag, str) or el.tag in SHELL:
            continue
        if el.tag not in ELEMENT_FEATURES:
            problems.append(f"<{el.tag}>: no caniemail mapping")
        elif ELEMENT_FEATURES[el.tag]:
            problems += [f"<{el.tag}>: {p}" for p in _supported(features[ELEMENT_FEATURES[el.tag]])]
        for decl in (el.get("style") or "").split(";"):
            if ":" not in decl:
                continue
            prop, value = (x.strip().lower() for x in decl.split(":", 1))
            if prop.startswith("mso-") or prop in UNLISTED_OK:
                continue
            slugs = _property_features(prop, value, features)
            if not slugs:
                problems.append(f"{prop}: not in caniemail")
            for slug in slugs:
                problems += [f"{prop}:{value} ({slug}): {p}" for p in _supported(features[slug])]
    return sorted(set(problems))


def test_every_inline_property_and_element_is_supported(sample_html, image_html):
    assert CANIEMAIL.exists()
    for html in (sample_html, image_html):
        assert check_caniemail(html) == []


def test_caniemail_check_can_fail():
    bad = '<html><body><div style="position:absolute; display:none; height:10px">x</div><svg></svg></body></html>'
    problems = check_caniemail(bad)
    assert any(p.startswith("position") for p in problems)
    assert any("css-display-none" in p for p in problems)  # Gmail's mobile web view strips it
    assert any(p.startswith("height") and "yahoo" in p for p in problems)
    assert any("<svg>" in p for p in problems)


# -- safety and sizes -----------------------------------------------------------------------

HOSTILE = """---
title: "<script>alert(1)</script> {{ 7*7 }} {% raw %}x{% endraw %}"
date: 2024-01-10
summary: "<img src=x onerror=alert(1)> {{ config }}"
event:
  title: "<b>bold</b> {{ 7*7 }}"
  starts: 2024-02-20T18:00
  venue: "<a href='javascript:alert(1)'>venue</a>"
  signup_url: "javascript:alert(1)"
  speakers: ["<i>Eve</i>, {{ self }}"]
links:
  - {title: "<script>x</script>", url: "javascript:alert(1)"}
  - {title: "data", url: "data:text/html;base64,PHNjcmlwdD4="}
  - {title: "ok {{ 1+1 }}", url: "https://example.com/?a=1&b=2"}
---
Editors wrote {{ 7*7 }} {% for x in range(3) %}loop{% endfor %} <script>alert(2)</script> inside a transcript sentence.
"""


def test_hostile_episode_is_data_not_markup_or_template(settings, tmp_path):
    p = tmp_path / "hostile.md"
    p.write_text(HOSTILE)
    ep = load_episode(p, settings.tz)
    html, text = compose(ep, settings, datetime(2024, 1, 10)).personalised(Recipient("r@example.org", "<b>Mallory</b>"))
    root = doc(html)
    assert not list(root.iter("script"))
    assert "<script>" not in html and "&lt;script&gt;" in html
    # the title reaches the reader character for character: not evaluated, not interpreted
    assert root.find(".//h1").text_content() == "<script>alert(1)</script> {{ 7*7 }} {% raw %}x{% endraw %}"
    assert root.find(".//h2[@class='btitle']").text_content() == "<b>bold</b> {{ 7*7 }}"
    assert "{{ 7*7 }} {% for x in range(3) %}loop{% endfor %}" in text
    urls = [v for el in root.iter() for k, v in el.attrib.items() if k in ("href", "src")]
    assert urls and all(u.startswith(("https://", "mailto:")) for u in urls)
    assert "https://example.com/?a=1&amp;b=2" in html
    assert "Hi &lt;b&gt;Mallory&lt;/b&gt;," in html and "<b>Mallory" not in html
    assert not any(a.get("onerror") for a in root.iter())


def test_template_syntax_in_page_layout_is_shown_literally(settings, tmp_path):
    p = tmp_path / "ep.txt"
    p.write_text("Show {{ 7*7 }}\n\n1 Jan 2024\n\nIntro {% if true %}yes{% endif %}.\n\nBody text.\n")
    ep = load_episode(p, settings.tz)
    html, text = compose(ep, settings).personalised(Recipient("r@example.org"))
    assert "Show {{ 7*7 }}" in html and "{% if true %}yes{% endif %}" in html
    assert "Show {{ 7*7 }}" in text


def test_huge_transcript_stays_small(settings, tmp_path):
    sentence = "The committee discussed digital services and data standards at length today. "
    body = "\n\n".join(sentence * 8 for _ in range(3000))  # ~5 MB of transcript
    links = "\n".join(f"Link {i} – https://example.com/{i}" for i in range(500))
    p = tmp_path / "huge.txt"
    p.write_text(f"Huge\n\n1 Jan 2024\n\nIntro.\n\nLinks & Sources\n\n{links}\n\n{body}\n")
    ep = load_episode(p, settings.tz)
    assert len(ep.links) == 200
    html, _ = compose(ep, settings).personalised(Recipient("r@example.org"))
    assert len(html.encode()) < 60_000
    assert "more links on the episode page" in html


def test_past_event_is_not_advertised(settings, seed_path):
    ep = load_episode(seed_path, settings.tz)
    before = compose(ep, settings, as_of=datetime(2023, 11, 28, tzinfo=settings.tz))
    after = compose(ep, settings, as_of=datetime(2023, 11, 30, tzinfo=settings.tz))
    html_before, _ = before.personalised(Recipient("r@example.org"))
    html_after, text_after = after.personalised(Recipient("r@example.org"))
    assert "A Whole Team Approach" in html_before and before.ics
    assert "A Whole Team Approach" not in html_after and after.ics is None
    assert "Add to calendar" not in text_after


def test_premailer_runs_once_per_episode(settings, seed_path, monkeypatch):
    calls = []
    real = render_mod.inline_css
    monkeypatch.setattr(render_mod, "inline_css", lambda h: calls.append(1) or real(h))
    ep = load_episode(seed_path, settings.tz)
    template = compose(ep, settings)
    bodies = {template.build(Recipient(f"r{i}@example.org", f"Name{i}"))[0] for i in range(50)}
    assert len(calls) == 1
    assert len(bodies) == 50


def test_banner_stands_apart_from_the_cards_in_both_schemes():
    """In dark mode the banner was #0c2236 on cards of #1b2128: nearly the same."""
    for palette in (LIGHT, DARK):
        assert contrast(palette["banner"], palette["card"]) >= 1.5, palette
        assert contrast(palette["banner"], palette["page"]) >= 1.5, palette


def test_buttons_are_never_underlined_and_headings_have_a_sensible_line_height(sample_html, image_html):
    for html in (sample_html, image_html):
        root = doc(html)
        buttons = root.xpath("//a[contains(@class, 'button-a')]")
        assert buttons
        for a in buttons:
            assert _declarations(a.get("style"))["text-decoration"] == "none"
        headings = list(root.iter("h1", "h2", "h3"))
        assert headings
        for h in headings:
            decl = _declarations(h.get("style"))
            ratio = float(decl["line-height"].rstrip("px")) / float(decl["font-size"].rstrip("px"))
            assert 1.1 <= ratio <= 1.35, (h.text_content()[:30], ratio)

"""The inlined email as a reader sees it, in real headless Chromium (Debian's, via Playwright):
screenshots at 375 and 1280 px in light and dark mode (prefers-color-scheme emulation), with
the facts behind them checked: the font stack on every text element, no sideways scrolling, the
dark-mode rules applied and the event banner standing apart from the cards.

SCREENSHOTS_DIR=dir keeps the PNGs to look at.
"""

from __future__ import annotations

import os
import re
import shutil
from datetime import datetime
from pathlib import Path

import pytest

from worker.episodes import load_episode
from worker.message import Recipient, compose
from worker.render import DARK, LIGHT

from .factories import contrast

pytestmark = pytest.mark.integration  # starts Chromium

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "episodes"
EPISODES = {  # file, send time before its event
    "sample": ("sample-episode.txt", datetime(2023, 11, 23, 9, 0)),
    "green-commute": ("green-commute-12.md", datetime(2024, 4, 18, 9, 0)),
}

# Every element that holds text of its own (not the hidden preheader): its computed font.
FACTS = """() => {
  const fonts = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const el = walker.currentNode.parentElement;
    if (!walker.currentNode.textContent.trim() || el.closest('.preheader, style')) continue;
    fonts.push([el.tagName, el.className, getComputedStyle(el).fontFamily]);
  }
  const bg = sel => { const e = document.querySelector(sel); return e ? getComputedStyle(e).backgroundColor : null; };
  return {scroll: document.documentElement.scrollWidth, fonts,
          banner: bg('td.banner'), card: bg('td.card'), page: bg('div.page')};
}"""


def _hex(rgb: str) -> str:
    r, g, b = (int(x) for x in re.findall(r"\d+", rgb)[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


@pytest.fixture
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"], headless=True)
        yield b
        b.close()


@pytest.mark.parametrize("name", sorted(EPISODES))
def test_the_email_in_chromium_at_two_widths_light_and_dark(settings, chromium, tmp_path, name):
    file, send_time = EPISODES[name]
    ep = load_episode(FIXTURES / file, settings.tz)
    html, text = compose(ep, settings, send_time).personalised(Recipient("reader@example.org", "Reader"))
    assert 'id="event"' in html  # the banner is part of what is looked at
    out = Path(os.environ.get("SCREENSHOTS_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    for width in (375, 1280):
        for scheme in ("light", "dark"):
            ctx = chromium.new_context(viewport={"width": width, "height": 900}, color_scheme=scheme)
            page = ctx.new_page()
            page.set_content(html)
            shot = out / f"email-{name}-{width}-{scheme}.png"
            page.screenshot(path=str(shot), full_page=True)
            facts = page.evaluate(FACTS)
            ctx.close()
            where = f"{name} at {width}px {scheme}"
            assert shot.stat().st_size > 20_000, where
            assert facts["scroll"] <= width, f"{where}: scrolls sideways ({facts['scroll']}px)"
            assert len(facts["fonts"]) > 20, where
            wrong = [
                f for f in facts["fonts"] if not (f[2].startswith("-apple-system") and f[2].endswith("sans-serif"))
            ]
            assert not wrong, f"{where}: text without the email's font stack: {wrong[:3]}"
            palette = DARK if scheme == "dark" else LIGHT
            assert _hex(facts["card"]) == palette["card"], where  # the scheme's own rules apply
            assert _hex(facts["banner"]) == palette["banner"], where
            assert contrast(_hex(facts["banner"]), _hex(facts["card"])) >= 1.5, f"{where}: banner blends in"
    # the plain-text part reads on its own: no markup, no placeholder, lines a mail reader keeps
    assert "<" not in text.replace("<script>", "") and "NL" not in text.split("--")[0][-50:]
    assert all(len(line) <= 78 or "://" in line for line in text.splitlines()), text

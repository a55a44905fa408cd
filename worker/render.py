"""Digest -> inlined email, rendered once per episode and personalised per recipient.

`render_email` runs Jinja2 and premailer once. Per-recipient values (name, address, unsubscribe
URL) go into the output as unguessable tokens; `Personaliser` later swaps them for each
recipient by joining pre-split segments, with no template engine involved.
"""

from __future__ import annotations

import binascii
import html
import logging
import re
import secrets
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import premailer
from jinja2 import Environment, StrictUndefined
from markupsafe import Markup

from .digest import Digest, smaller
from .templating import TemplateFiles

log = logging.getLogger(__name__)

FONTS = "-apple-system, BlinkMacSystemFont, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"

# Colours in one place, so the contrast test can check every pair the templates use.
LIGHT = {
    "page": "#f2f4f7",
    "card": "#ffffff",
    "text": "#1f2933",
    "muted": "#52606d",
    "link": "#0b57d0",
    "banner": "#0f2d4a",
    "banner_text": "#ffffff",
    "banner_accent": "#ffd166",
    "button": "#0b57d0",
    "button_text": "#ffffff",
    "notice": "#fff3bf",
    "notice_text": "#5c3c00",
}
DARK = {
    "page": "#101418",
    "card": "#1b2128",
    "text": "#e8ecf1",
    "muted": "#b4bec9",
    "link": "#8ab4f8",
    "banner": "#1a4a7a",
    "banner_text": "#ffffff",
    "banner_accent": "#ffd166",
    "button": "#8ab4f8",
    "button_text": "#0b1a2c",
    "notice": "#3d2e00",
    "notice_text": "#ffe08a",
}
# (foreground, background) pairs the templates put together.
COLOUR_PAIRS = [
    ("text", "card"),
    ("muted", "card"),
    ("link", "card"),
    ("muted", "page"),
    ("link", "page"),
    ("banner_text", "banner"),
    ("banner_accent", "banner"),
    ("button_text", "button"),
    ("notice_text", "notice"),
]

SLOTS = ("greeting", "email", "unsubscribe_url", "manage_url")

# The CSS lives in `worker/templates/email/_base/*.css`, rendered without HTML autoescape: autoescape
# would turn the font stack's quotes into `&#39;`, the CSS parser would drop the declaration and
# premailer would inline no font at all. So only these constants may reach the CSS, and they
# must not be able to close a declaration, a rule or the <style> element.
_CSS_VALUE = re.compile(r"^[A-Za-z0-9#'\-, ]+$")


def _check_css_constants() -> None:
    for value in [FONTS, *LIGHT.values(), *DARK.values()]:
        if not _CSS_VALUE.match(value):
            raise ValueError(f"not a plain CSS value: {value!r}")


_check_css_constants()


@dataclass(frozen=True)
class RenderedEmail:
    """One episode's email before personalisation. `nonce` names its placeholder tokens."""

    name: str
    subject: str
    html: str
    text: str
    nonce: str

    def personaliser(self) -> Personaliser:
        """A Personaliser for this email (splits it once)."""
        return Personaliser(self)


class Personaliser:
    """Fills the placeholder tokens for one recipient: split once, join per recipient."""

    def __init__(self, rendered: RenderedEmail):
        pattern = re.compile(rf"NL{rendered.nonce}([a-z_]+)X")
        # Even indexes are literal text, odd ones slot names.
        self.html_parts = _split(pattern, rendered.html)
        self.text_parts = _split(pattern, rendered.text)

    def fill(self, values: dict[str, str]) -> tuple[str, str]:
        """(html, text) with each slot (see SLOTS) replaced by `values[slot]`, HTML-escaped in
        the HTML. KeyError for a missing slot."""
        escaped = {k: html.escape(v, quote=True) for k, v in values.items()}
        return _join(self.html_parts, escaped), _join(self.text_parts, values)


def _split(pattern: re.Pattern, text: str) -> list[str]:
    parts = pattern.split(text)
    for name in parts[1::2]:
        if name not in SLOTS:
            raise ValueError(f"unknown placeholder {name!r}")
    return parts


def _join(parts: list[str], values: dict[str, str]) -> str:
    out = parts[:]
    for i in range(1, len(out), 2):
        out[i] = values[out[i]]
    return "".join(out)


@lru_cache(maxsize=4)
def _environment(templates_dir: Path) -> Environment:
    # Autoescape for HTML only: the text twin is plain text and the CSS is CSS. StrictUndefined: a typo in a
    # template fails the render instead of sending an email with a hole in it.
    env = Environment(
        loader=TemplateFiles(templates_dir, "email"),
        autoescape=lambda name: bool(name and name.endswith(".html")),
        undefined=StrictUndefined,
        trim_blocks=False,
        keep_trailing_newline=True,
    )
    return env


class _Tokens:
    """What templates see as `recipient`: each attribute is a placeholder token."""

    def __init__(self, nonce: str):
        self._nonce = nonce

    def __getattr__(self, name: str) -> Markup:
        if name not in SLOTS:
            raise AttributeError(name)
        return Markup(f"NL{self._nonce}{name}X")


# Bytes the two encoded text parts (HTML and plain text, quoted-printable) may take together.
# What else a message carries stays under 14 KB: headers, the calendar part (its fields are
# bounded in worker.digest.event, under 8 KB base64) and the recipient's own values. So every email stays under
# 60 KB, far below Gmail's ~102 KB clipping, whatever the episode holds.
PARTS_BUDGET = 46_000


def encoded_size(rendered: RenderedEmail) -> int:
    """Bytes of the HTML and text parts once quoted-printable encoded (as worker.message does)."""
    return sum(len(binascii.b2a_qp(t.encode("utf-8"), istext=True)) for t in (rendered.html, rendered.text))


def render_email(
    digest: Digest, templates_dir: Path, name: str = "digest", extra: dict | None = None, budget: int = PARTS_BUDGET
) -> RenderedEmail:
    """The digest as an inlined HTML email and its plain-text twin, with placeholder tokens for
    the recipient's values (see `Personaliser`).

    The encoded parts stay within `budget` bytes: when they would not, the digest is shortened
    step by step (`worker.digest.smaller`: links first, to the web page) and rendered again;
    the usual episode renders once. Raises jinja2's TemplateNotFound for a missing template.
    """
    rendered = _render(digest, templates_dir, name, extra)
    while encoded_size(rendered) > budget:
        shorter = smaller(digest)
        if shorter is None:
            break  # the skeleton alone: bounded by the templates, tested far below the budget
        digest = shorter
        rendered = _render(digest, templates_dir, name, extra)
    return rendered


def _render(digest: Digest, templates_dir: Path, name: str, extra: dict | None) -> RenderedEmail:
    nonce = secrets.token_hex(8)
    env = _environment(Path(templates_dir))
    ep = digest.episode
    context = {
        "subject": digest.subject,
        "preheader": digest.preheader,
        "episode": ep,
        "episode_date": f"{ep.date.day} {ep.date.strftime('%B %Y')}",
        "intro": digest.intro,
        "lead_in": digest.lead_in,
        "event": digest.event,
        "highlights": digest.highlights,
        "links": digest.links,
        "more_links": digest.more_links,
        "web_url": digest.web_url,
        "email_url": digest.email_url,
        "listen_url": digest.listen_url,
        "list_name": digest.list_name,
        "sender_postal": digest.sender_postal,
        "recipient": _Tokens(nonce),
        "c": LIGHT,
        "d": DARK,
        "fonts": FONTS,
        **(extra or {}),
    }
    subject = env.get_template(f"{name}/subject.txt").render(context).strip()
    subject = " ".join(subject.split())  # one line, whatever the template did
    text = env.get_template(f"{name}/body.txt").render(context)
    text = re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
    raw_html = env.get_template(f"{name}/body.html").render(context)
    return RenderedEmail(name=name, subject=subject, html=inline_css(raw_html), text=text, nonce=nonce)


def inline_css(raw_html: str) -> str:
    """premailer with the settings email needs: keep classes (the media queries use them), keep
    `!important`, never fetch anything, and leave `data-premailer="ignore"` blocks alone."""
    inliner = premailer.Premailer(
        raw_html,
        remove_classes=False,
        strip_important=False,
        keep_style_tags=False,
        disable_validation=True,
        allow_network=False,
        cssutils_logging_level=logging.CRITICAL,
        cache_css_parsing=True,
    )
    return inliner.transform()

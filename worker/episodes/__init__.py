"""Episode documents -> one `Episode` model.

Three readers give the same model: the show's plain-text page layout (`page`), a Markdown file
with YAML front matter (`markdown`) and a feed item (`feed_item`). Everything read here is data:
nothing in an episode is ever treated as template source or as a header.
"""

from ..errors import EpisodeError
from .dates import date_in, parse_date, parse_time_range
from .feed_item import default_item_id, enclosure_url, entry_date, entry_time, entry_title, read_feed_item
from .load import MAX_EPISODE_BYTES, load_episode, read_text
from .markdown import parse_markdown
from .model import Episode, Event, Link, Speaker, build_episode, episode_number
from .notes import field_text, html_to_lines, html_to_text, notes_to_lines
from .page import parse_page, parse_speakers

__all__ = [
    "MAX_EPISODE_BYTES",
    "Episode",
    "EpisodeError",
    "Event",
    "Link",
    "Speaker",
    "build_episode",
    "date_in",
    "default_item_id",
    "enclosure_url",
    "entry_date",
    "entry_time",
    "entry_title",
    "episode_number",
    "field_text",
    "html_to_lines",
    "html_to_text",
    "load_episode",
    "notes_to_lines",
    "parse_date",
    "parse_markdown",
    "parse_page",
    "parse_speakers",
    "parse_time_range",
    "read_feed_item",
    "read_text",
]

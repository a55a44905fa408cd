"""Episode documents -> one `Episode` model.

Three readers give the same model: the show's plain-text page layout (`page`), a Markdown file
with YAML front matter (`markdown`) and a feed item (`feed_item`). Everything read here is data:
nothing in an episode is ever treated as template source or as a header.
"""

from ..errors import EpisodeError
from .dates import date_in, parse_date, parse_time_range
from .feed_item import html_to_lines, item_key, read_feed_item
from .load import MAX_EPISODE_BYTES, load_episode, read_text
from .markdown import parse_markdown
from .model import Episode, Event, Link, Speaker, build_episode, episode_number
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
    "episode_number",
    "html_to_lines",
    "item_key",
    "load_episode",
    "parse_date",
    "parse_markdown",
    "parse_page",
    "parse_speakers",
    "parse_time_range",
    "read_feed_item",
    "read_text",
]

"""A visitor who finds the archive can find the signup form from any page."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from worker.db import migrate
from worker.settings import get_settings
from worker.web import create_app


def test_every_page_links_to_the_signup_form(settings_env):
    settings = get_settings()
    migrate(settings)
    with TestClient(create_app(settings)) as client:
        for path in ("/", "/unsubscribe", "/subscribe", "/episodes/no-such-episode"):
            page = client.get(path).text
            footer = re.search(r"<footer.*?</footer>", page, re.S)
            assert footer and '<a href="/subscribe">Get it by email</a>' in footer.group(0), path
        assert client.get("/subscribe").status_code == 200

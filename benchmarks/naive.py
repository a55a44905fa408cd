"""The naive pipeline the benchmark compares against: per recipient, render with Jinja2, inline
with premailer, build a stdlib EmailMessage, open an SMTP connection and send; one Celery task
per message. This is what a first version of a newsletter sender usually looks like."""

from __future__ import annotations

import os
import smtplib
from email.message import EmailMessage
from functools import lru_cache
from urllib.parse import urlsplit

from celery import Celery

app = Celery("naive", broker=os.environ.get("NAIVE_BROKER_URL", "redis://127.0.0.1:6379/15"))
app.conf.update(
    task_ignore_result=True,
    worker_prefetch_multiplier=1,
    task_acks_late=True,
    task_default_queue="naive",
    worker_hijack_root_logger=False,
)


@lru_cache(maxsize=1)
def _episode(path: str):  # noqa: ANN202 - parsing once is fair; rendering per recipient is the naive part
    from worker.episodes import load_episode
    from worker.settings import get_settings

    return load_episode(path, get_settings().tz)


@app.task(name="naive.send_one")
def send_one(email: str, name: str, episode_path: str, as_of: str) -> None:
    from datetime import datetime

    from worker.digest import build_digest
    from worker.message import message_id, unsubscribe_token
    from worker.render import render_email
    from worker.settings import get_settings

    settings = get_settings()
    ep = _episode(episode_path)
    digest = build_digest(ep, settings, datetime.fromisoformat(as_of))
    rendered = render_email(digest, settings.templates_dir)  # Jinja2 + premailer, per recipient
    token = unsubscribe_token(settings, email)
    values = {
        "greeting": name.split(" ")[0] or "there",
        "email": email,
        "unsubscribe_url": f"{settings.base_url}/unsubscribe/{token}",
        "manage_url": f"{settings.base_url}/manage/{token}",
    }
    html, text = rendered.personaliser().fill(values)
    msg = EmailMessage()
    msg["From"] = settings.from_addr
    msg["To"] = f"{name} <{email}>"
    msg["Subject"] = rendered.subject
    msg["Message-ID"] = message_id(settings, ep.guid, email)
    msg["List-Unsubscribe"] = f"<{values['unsubscribe_url']}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    if digest.ics:
        msg.add_attachment(digest.ics, maintype="text", subtype="calendar", filename="event.ics")
    url = urlsplit(settings.mail_url)
    with smtplib.SMTP(url.hostname, url.port, timeout=30) as smtp:
        smtp.send_message(msg)

"""POST /hooks/ses, /hooks/postmark, /hooks/mailgun: real-shaped payloads for hard and soft
bounces, complaints and deliveries; forged, replayed, stale and malformed posts change nothing."""

from __future__ import annotations

import base64
import json
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from worker.bounces.sns import sns_url_allowed
from worker.db import session_scope
from worker.ledger import status
from worker.models import Delivery, DeliveryEvent, Subscriber
from worker.settings import get_settings, reset_settings
from worker.web import create_app

from .feedback_helpers import (
    TOPIC,
    SNSCertServer,
    mailgun_event,
    mailgun_post,
    sent_delivery,
    ses_bounce,
    ses_complaint,
    ses_delivery,
    sns_notification,
)

MG_KEY = "key-mailgun-signing"
PM_SECRET = "postmark-hook-secret"


@pytest.fixture
def hooks(database, monkeypatch, tmp_path):
    monkeypatch.setenv("NEWSLETTER_SES_SNS_TOPICS", TOPIC)
    monkeypatch.setenv("NEWSLETTER_POSTMARK_WEBHOOK_SECRET", PM_SECRET)
    monkeypatch.setenv("NEWSLETTER_MAILGUN_WEBHOOK_SIGNING_KEY", MG_KEY)
    monkeypatch.setenv("NEWSLETTER_SOFT_BOUNCE_LIMIT", "2")
    reset_settings()
    certs = SNSCertServer(tmp_path)
    app = create_app(get_settings())
    app.state.sns = certs.endpoint()
    with TestClient(app) as client:
        client.certs = certs
        yield client
    certs.close()


def delivery(email: str, **kw):  # noqa: ANN003, ANN201
    with session_scope() as session:
        d = sent_delivery(session, email, **kw)
        return d.id, d.campaign_id, d.message_id


def state(email: str) -> tuple[str, str]:
    with session_scope() as session:
        sub = session.scalar(select(Subscriber).where(Subscriber.email_key == email))
        return sub.status, sub.status_reason


def delivery_status(delivery_id: int) -> str:
    with session_scope() as session:
        return session.get(Delivery, delivery_id).status


def events() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(DeliveryEvent))


def post_sns(client, message: dict, **headers):  # noqa: ANN001, ANN003, ANN201
    return client.post(
        "/hooks/ses",
        content=json.dumps(message),
        headers={"x-amz-sns-message-type": message.get("Type", ""), "content-type": "text/plain", **headers},
    )


# -- SES ----------------------------------------------------------------------------------------


def test_ses_hard_bounce_suppresses_and_a_replay_changes_nothing(hooks):
    did, cid, mid = delivery("gone@example.org", provider_id="0102-ses-1")
    note = hooks.certs.sign(sns_notification(ses_bounce("gone@example.org", "0102-ses-1", mid)), version="1")
    r = post_sns(hooks, note)
    assert r.status_code == 200 and r.json()["recorded"] == 1
    assert state("gone@example.org")[0] == "bounced"
    assert delivery_status(did) == "bounced"
    with session_scope() as session:
        ev = session.scalar(select(DeliveryEvent))
        assert ev.kind == "hard_bounce" and ev.delivery_id == did and json.loads(ev.payload) == note
        assert status(session, cid).feedback["bounced"] == 1
    again = post_sns(hooks, note)
    assert again.status_code == 409 and events() == 1


def test_ses_soft_bounces_suppress_after_the_limit_of_distinct_messages(hooks):
    first = delivery("full@example.org", provider_id="ses-a")
    second = delivery("full@example.org", provider_id="ses-b")
    for (_did, _cid, mid), ses_id in ((first, "ses-a"), (second, "ses-b")):
        note = hooks.certs.sign(
            sns_notification(ses_bounce("full@example.org", ses_id, mid, permanent=False)), version="2"
        )
        assert post_sns(hooks, note).status_code == 200
        if ses_id == "ses-a":
            assert state("full@example.org")[0] == "active"  # one soft bounce is only counted
    assert state("full@example.org")[0] == "bounced" and "2 soft bounces" in state("full@example.org")[1]


def test_ses_complaint_and_delivery_are_counted_per_campaign(hooks):
    did, cid, mid = delivery("angry@example.org", provider_id="ses-c")
    assert (
        post_sns(hooks, hooks.certs.sign(sns_notification(ses_delivery("angry@example.org", "ses-c", mid)))).status_code
        == 200
    )
    assert (
        post_sns(
            hooks, hooks.certs.sign(sns_notification(ses_complaint("angry@example.org", "ses-c", mid)))
        ).status_code
        == 200
    )
    assert state("angry@example.org") == ("complained", "complaint")
    with session_scope() as session:
        fb = status(session, cid).feedback
    assert fb == {"delivered": 1, "bounced": 0, "complained": 1, "unsubscribed": 1}


def test_ses_matches_our_message_id_when_the_ses_id_is_unknown(hooks):
    did, _cid, mid = delivery("mid@example.org")
    assert (
        post_sns(hooks, hooks.certs.sign(sns_notification(ses_bounce("mid@example.org", "other", mid)))).status_code
        == 200
    )
    assert delivery_status(did) == "bounced"


def test_forged_stale_and_malformed_sns_posts_change_nothing(hooks):
    _did, _cid, mid = delivery("victim@example.org", provider_id="ses-v")
    good = hooks.certs.sign(sns_notification(ses_bounce("victim@example.org", "ses-v", mid)))
    tampered = {**good, "Message": good["Message"].replace("victim@", "other@")}
    assert post_sns(hooks, tampered).status_code == 403
    elsewhere = hooks.certs.sign(sns_notification(ses_bounce("victim@example.org", "ses-v", mid)))
    elsewhere["SigningCertURL"] = "https://attacker.example.com/sns.pem"
    assert post_sns(hooks, elsewhere).status_code == 403
    wrong_topic = hooks.certs.sign(
        {
            **sns_notification(ses_bounce("victim@example.org", "ses-v", mid)),
            "TopicArn": "arn:aws:sns:eu-west-1:999999999999:theirs",
        }
    )
    assert post_sns(hooks, wrong_topic).status_code == 403
    stale = hooks.certs.sign(
        sns_notification(ses_bounce("victim@example.org", "ses-v", mid), timestamp="2020-01-01T00:00:00.000Z")
    )
    assert post_sns(hooks, stale).status_code == 400
    assert post_sns(hooks, good, **{"x-amz-sns-message-type": "SubscriptionConfirmation"}).status_code == 400
    assert post_sns(hooks, {**good, "SignatureVersion": "3"}).status_code == 400
    assert hooks.post("/hooks/ses", content=b"\x00not json", headers={"x-amz-sns-message-type": "x"}).status_code == 400
    assert events() == 0 and state("victim@example.org")[0] == "active"
    # The certificate was fetched once and cached; the off-host URL was never fetched.
    assert post_sns(hooks, good).status_code == 200
    assert hooks.app.state.sns.store.fetches == 1


def test_sns_subscription_is_confirmed_only_at_an_sns_url(hooks):
    confirm = {
        "Type": "SubscriptionConfirmation",
        "MessageId": "c-1",
        "Token": "tok",
        "TopicArn": TOPIC,
        "Message": "You have chosen to subscribe to the topic.",
        "SubscribeURL": f"{hooks.certs.url}/?Action=ConfirmSubscription&Token=tok",
        "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
    }
    assert post_sns(hooks, hooks.certs.sign(confirm)).status_code == 200
    assert hooks.certs.confirmed == [confirm["SubscribeURL"]]
    evil = {**confirm, "SubscribeURL": "https://attacker.example.com/?x"}
    assert post_sns(hooks, hooks.certs.sign(evil)).status_code == 403
    assert len(hooks.certs.confirmed) == 1


def test_the_sns_host_rule():
    assert sns_url_allowed("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem")
    assert sns_url_allowed("https://sns.us-gov-west-1.amazonaws.com/x.pem")
    assert sns_url_allowed("https://sns.cn-north-1.amazonaws.com.cn/x.pem")
    for url in [
        "http://sns.eu-west-1.amazonaws.com/x.pem",
        "https://sns.eu-west-1.amazonaws.com.evil.com/x.pem",
        "https://evil.com/sns.eu-west-1.amazonaws.com/x.pem",
        "https://sns.amazonaws.com/x.pem",
        "https://user@sns.eu-west-1.amazonaws.com/x.pem",
        "https://sns.eu-west-1.amazonaws.com:8443/x.pem",
        "https://s3.eu-west-1.amazonaws.com/x.pem",
        "https://sns.eu_west-1.amazonaws.com/x.pem",
        "",
        "x",
    ]:
        assert not sns_url_allowed(url), url


def test_ses_hooks_are_off_without_topics(hooks, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SES_SNS_TOPICS", "")
    reset_settings()
    app = create_app(get_settings())
    app.state.sns = hooks.app.state.sns
    _did, _cid, mid = delivery("x@example.org")
    note = hooks.certs.sign(sns_notification(ses_bounce("x@example.org", "s", mid)))
    assert post_sns(TestClient(app), note).status_code == 403 and events() == 0


# -- Postmark -----------------------------------------------------------------------------------


def pm_auth(user: str = "postmark", secret: str = PM_SECRET) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}


def pm_bounce(email: str, message_id: str, kind: str = "HardBounce", bounce_id: int = 4323372036854775807) -> dict:
    return {
        "RecordType": "Bounce",
        "MessageStream": "broadcast",
        "ID": bounce_id,
        "Type": kind,
        "TypeCode": 1 if kind == "HardBounce" else 4096,
        "Name": "Hard bounce",
        "Tag": "",
        "MessageID": message_id,
        "Metadata": {},
        "ServerID": 23,
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": "smtp;550 5.1.1 user unknown",
        "Email": email,
        "From": "newsletter@news.example.org",
        "BouncedAt": "2026-11-29T16:33:54.9070259Z",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Episode",
    }


def test_postmark_bounce_complaint_delivery_and_replay(hooks):
    did, cid, _ = delivery("pm-gone@example.org", provider_id="883953f4-6105-42a2-a16a-77a8eac79483")
    body = pm_bounce("pm-gone@example.org", "883953f4-6105-42a2-a16a-77a8eac79483")
    assert hooks.post("/hooks/postmark", json=body, headers=pm_auth()).status_code == 200
    assert state("pm-gone@example.org")[0] == "bounced" and delivery_status(did) == "bounced"
    assert hooks.post("/hooks/postmark", json=body, headers=pm_auth()).status_code == 403  # replay
    soft_id, _, _ = delivery("pm-full@example.org", provider_id="pm-2")
    soft = pm_bounce("pm-full@example.org", "pm-2", kind="SoftBounce", bounce_id=77)
    assert hooks.post("/hooks/postmark", json=soft, headers=pm_auth()).status_code == 200
    assert state("pm-full@example.org")[0] == "active" and delivery_status(soft_id) == "sent"
    _, _, _ = delivery("pm-angry@example.org", provider_id="pm-3")
    complaint = {
        **pm_bounce("pm-angry@example.org", "pm-3", bounce_id=78),
        "RecordType": "SpamComplaint",
        "Type": "SpamComplaint",
        "TypeCode": 512,
    }
    assert hooks.post("/hooks/postmark", json=complaint, headers=pm_auth()).status_code == 200
    assert state("pm-angry@example.org")[0] == "complained"
    delivered = {
        "RecordType": "Delivery",
        "ServerID": 23,
        "MessageStream": "broadcast",
        "MessageID": "pm-3",
        "Recipient": "pm-angry@example.org",
        "Tag": "",
        "DeliveredAt": "2026-11-29T16:30:00Z",
        "Details": "Test delivery webhook details",
        "Metadata": {},
    }
    assert hooks.post("/hooks/postmark", json=delivered, headers=pm_auth()).status_code == 200
    assert events() == 4


def test_postmark_without_the_secret_or_with_garbage_changes_nothing(hooks):
    delivery("pm-x@example.org", provider_id="pm-x")
    body = pm_bounce("pm-x@example.org", "pm-x")
    assert hooks.post("/hooks/postmark", json=body).status_code == 401
    assert hooks.post("/hooks/postmark", json=body, headers=pm_auth(secret="guess")).status_code == 401
    assert hooks.post("/hooks/postmark", json=body, headers=pm_auth(user="other")).status_code == 401
    assert hooks.post("/hooks/postmark", content=b"[1,2", headers=pm_auth()).status_code == 400
    assert hooks.post("/hooks/postmark", json={"hello": 1}, headers=pm_auth()).status_code == 400
    assert events() == 0 and state("pm-x@example.org")[0] == "active"


# -- Mailgun ------------------------------------------------------------------------------------


def test_mailgun_failed_complained_delivered_and_replay(hooks):
    did, cid, mid = delivery("mg-gone@example.org")
    post = mailgun_post(MG_KEY, mailgun_event("failed", "mg-gone@example.org", mid, severity="permanent"))
    assert hooks.post("/hooks/mailgun", content=post, headers={"content-type": "application/json"}).status_code == 200
    assert state("mg-gone@example.org")[0] == "bounced" and delivery_status(did) == "bounced"
    assert hooks.post("/hooks/mailgun", content=post, headers={"content-type": "application/json"}).status_code == 406
    soft_id, _, soft_mid = delivery("mg-full@example.org")
    soft = mailgun_post(MG_KEY, mailgun_event("failed", "mg-full@example.org", soft_mid, severity="temporary"))
    assert hooks.post("/hooks/mailgun", content=soft).status_code == 200
    assert state("mg-full@example.org")[0] == "active"
    _, _, angry_mid = delivery("mg-angry@example.org")
    assert (
        hooks.post(
            "/hooks/mailgun",
            content=mailgun_post(MG_KEY, mailgun_event("complained", "mg-angry@example.org", angry_mid)),
        ).status_code
        == 200
    )
    assert state("mg-angry@example.org")[0] == "complained"
    assert (
        hooks.post(
            "/hooks/mailgun",
            content=mailgun_post(MG_KEY, mailgun_event("delivered", "mg-angry@example.org", angry_mid)),
        ).status_code
        == 200
    )
    assert events() == 4


def test_mailgun_forged_stale_and_malformed_posts_change_nothing(hooks):
    _, _, mid = delivery("mg-x@example.org")
    event = mailgun_event("failed", "mg-x@example.org", mid, severity="permanent")
    assert hooks.post("/hooks/mailgun", content=mailgun_post("not-the-key", event)).status_code == 403
    stale = mailgun_post(MG_KEY, event, timestamp=int(time.time()) - 3600)
    assert hooks.post("/hooks/mailgun", content=stale).status_code == 406
    forged = json.loads(mailgun_post(MG_KEY, event))
    forged["signature"]["timestamp"] = str(int(time.time()) + 1)  # signature no longer matches
    assert hooks.post("/hooks/mailgun", content=json.dumps(forged)).status_code == 403
    assert hooks.post("/hooks/mailgun", content=b"garbage").status_code == 400
    assert hooks.post("/hooks/mailgun", content=json.dumps({"event-data": event})).status_code == 400
    assert events() == 0 and state("mg-x@example.org")[0] == "active"


def test_a_flood_of_webhook_posts_is_cut_off(hooks, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_WEBHOOK_POSTS_PER_MINUTE", "3")
    reset_settings()
    client = TestClient(create_app(get_settings()))
    answers = [client.post("/hooks/mailgun", content=b"garbage").status_code for _ in range(5)]
    assert answers == [400, 400, 400, 429, 429]

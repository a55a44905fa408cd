"""The campaign ledger: the source of truth for who has been sent what.

Every delivery moves queued -> claimed -> sending -> sent (or retry / failed), and every move is a
conditional UPDATE on the row's current status and claim token, so a stale or duplicate worker
cannot overwrite another's work. The broker only says "go and look"; these rows say what to do.

By lifecycle: `campaigns` (record an episode and its campaign, freeze the audience, the stored
email), `claims` (take a batch, record failures, release), `progress` (the per-message write of
the batch loop, one writer per database), `sweep` (dead workers, lost messages, finishing) and
`status` (the typed report), and `control` (staff: pause, resume, cancel, schedule, retry
failed). The ledger renders nothing: `worker.publish` hands it the email.
"""

from .campaigns import (
    PublishResult,
    add_campaign,
    campaign_for_episode,
    freeze_audience,
    get_campaign,
    insert_or_find,
    latest_campaign,
    record_episode,
    resend_uncertain,
    send_draft,
    store_email,
    stored_email,
)
from .claims import (
    Claimed,
    claim_batch,
    due,
    mark_permanent_failure,
    mark_temporary_failure,
    next_due_in,
    release_claim,
    retry_delay,
)
from .progress import GroupProgress, PostgresProgress, ProgressWriter, SqliteProgress
from .status import CampaignReport, DeliveryCounts, counts, status
from .sweep import SweepReport, finish_if_done, sweep

__all__ = [
    "CampaignReport",
    "Claimed",
    "DeliveryCounts",
    "GroupProgress",
    "PostgresProgress",
    "ProgressWriter",
    "PublishResult",
    "SqliteProgress",
    "SweepReport",
    "add_campaign",
    "campaign_for_episode",
    "claim_batch",
    "counts",
    "due",
    "finish_if_done",
    "freeze_audience",
    "get_campaign",
    "insert_or_find",
    "latest_campaign",
    "mark_permanent_failure",
    "mark_temporary_failure",
    "next_due_in",
    "record_episode",
    "release_claim",
    "resend_uncertain",
    "retry_delay",
    "send_draft",
    "status",
    "store_email",
    "stored_email",
    "sweep",
]

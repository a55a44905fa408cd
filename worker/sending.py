"""The batch loop that Celery tasks call: claim rows, send each, record each outcome.

A worker process sends through several sessions at once (`sessions_for`: SMTP connections or
HTTP clients, one thread each), because at real network distance a session spends nearly all
its time waiting for replies. The guarantee per session is exactly what it was per process:
between the claim and the outcome one row per session is 'sending' at any time, and durably so
before its content leaves; so a killed worker leaves at most one uncertain delivery per session
in flight. Everything else it held goes back to the queue when the sweeper sees its heartbeat
stop. The sessions' ledger writes share one connection and are grouped (`ledger.GroupProgress`):
one statement and one commit for every write waiting at that moment.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from . import sendwindow
from .bounces.verp import verp_for
from .db import session_factory
from .errors import (
    ClaimExpired,
    ConfigError,
    DeliveryUncertain,
    InputError,
    PermanentFailure,
    SenderRefused,
    TemporaryFailure,
    Throttled,
)
from .holds import mark_throttled, mark_uncertain, pause_campaign, record_provider_id
from .lease import Lease
from .ledger import (
    Claimed,
    GroupProgress,
    ProgressWriter,
    claim_batch,
    finish_if_done,
    mark_permanent_failure,
    mark_temporary_failure,
    next_due_in,
    release_claim,
    stored_email,
)
from .ledger.control import is_sending, settle_cancelled
from .message import MessageTemplate, Recipient
from .models import Campaign, CampaignStatus, EpisodeRecord, utcnow
from .ratelimit import RateLimiter
from .settings import Settings
from .slots import DestinationSlots, destination_of
from .transports import Transport, get_transport, transport_rate

log = logging.getLogger(__name__)
# A shared pause longer than this (seconds) ends the batch instead of sleeping in it.
LONG_PAUSE = 10.0
# How often (seconds) a batch checks that its campaign is still sending (not paused or cancelled).
STATUS_CHECK_INTERVAL = 1.0
# How long (seconds) a batch's release waits for an unreachable database before it leaves the
# batch to the sweeper.
RELEASE_PATIENCE = 30.0
# Rows a batch claims per session (at least NEWSLETTER_BATCH_SIZE in all): the batch ends when its
# last message does, so with fewer the sessions wait on each other at every batch's end.
ROWS_PER_SESSION = 8


def sessions_for(settings: Settings) -> int:
    """The most sending sessions one worker process may run: NEWSLETTER_SESSIONS_PER_WORKER, at
    most NEWSLETTER_SESSIONS_PER_DESTINATION (over all processes: `worker.slots`), and 1 on
    SQLite, which serialises writers anyway."""
    if settings.resolved_database_url.startswith("sqlite"):
        return 1
    return max(1, min(settings.sessions_per_worker, settings.sessions_per_destination))


class SessionSizer:
    """How many sessions a process runs, measured once on one session (Little's law).

    A message keeps a session busy for its wall time W (mostly waiting for the server and the
    ledger's commit) but costs the process only its CPU time C, so about W / C sessions keep the
    process busy, and more only queue for the interpreter lock. Measured over the first
    `PROBE_MESSAGES` messages of the process's first batch, on one session (W: the quickest of
    them, C: the median): against a server on the same machine W / C is about 2 and one session
    stays (below `MIN_RATIO`, a second thread would mostly add lock hand-offs); at 40 ms it is
    in the hundreds and the configured maximum applies.
    """

    PROBE_MESSAGES = 8
    MIN_RATIO = 3.0

    def __init__(self, maximum: int):
        self.maximum = maximum
        self.wanted: int | None = None if maximum > 1 else 1  # None: not measured yet
        self._samples: list[tuple[float, float]] = []

    @property
    def current(self) -> int:
        """Sessions to use now: 1 until measured."""
        return self.wanted or 1

    def record(self, wall: float, cpu: float) -> bool:
        """One probed message's wall and CPU seconds; True once the probe is complete."""
        self._samples.append((wall, cpu))
        if len(self._samples) < self.PROBE_MESSAGES:
            return False
        # The first message also opened the connection: left out. The quickest message is the
        # one least slowed by other processes wanting the same CPU (the other worker process,
        # the database), which would otherwise read as waiting for the network.
        wall = min(w for w, _ in self._samples[1:])
        cpus = sorted(c for _, c in self._samples[1:])
        cpu = max(cpus[len(cpus) // 2], 1e-5)
        ratio = wall / cpu
        self.wanted = 1 if ratio < self.MIN_RATIO else max(1, min(self.maximum, math.ceil(ratio - 1e-6)))
        log.info(
            "a message takes %.1f ms, %.2f ms of it CPU: %d sending session(s) per process wanted "
            "(NEWSLETTER_SESSIONS_PER_WORKER: %d; the destination's cap may grant fewer)",
            wall * 1000,
            cpu * 1000,
            self.wanted,
            self.maximum,
        )
        return True


@dataclass
class BatchOutcome:
    """What one `Sender.run` did to a campaign: deliveries sent, set to retry, failed and
    skipped, rows claimed, batches run; `next_due_in` and `paused_for` are in seconds."""

    sent: int = 0
    retry: int = 0
    failed: int = 0
    skipped_rows: int = 0
    claimed: int = 0
    batches: int = 0
    # seconds until the campaign's earliest retry (the ledger's, any worker's), None if none
    next_due_in: float | None = None
    stopped: str | None = None  # why this run stopped early: paused campaign, long throttle
    paused_for: float = 0.0  # seconds every worker must still wait (a provider's throttling)

    def counts(self) -> tuple[int, int, int, int]:
        """(sent, retry, failed, skipped_rows)."""
        return self.sent, self.retry, self.failed, self.skipped_rows

    def add(self, other: BatchOutcome) -> None:
        """Fold one session's outcome into this one."""
        self.sent += other.sent
        self.retry += other.retry
        self.failed += other.failed
        self.skipped_rows += other.skipped_rows
        self.stopped = self.stopped or other.stopped
        self.paused_for = max(self.paused_for, other.paused_for)


class Sender:
    """Per-process state: the sessions' transports (kept open across batches), one rate limiter,
    the compiled template, the session count (`SessionSizer`). A `transport` given here is the
    only session (tests)."""

    def __init__(self, settings: Settings, transport: Transport | None = None):
        self.settings = settings
        self.sizer = SessionSizer(1 if transport is not None else sessions_for(settings))
        if not settings.sessions_auto:
            self.sizer.wanted = self.sizer.maximum
        self._transports: list[Transport | None] = [transport] + [None] * (self.sizer.maximum - 1)
        self.limiter = RateLimiter(transport_rate(settings), settings.limiter_redis_url)
        self.verp = verp_for(settings)  # a VERP envelope sender per delivery, when configured
        self._templates: dict[int, MessageTemplate] = {}
        self.worker_name = f"{socket.gethostname()}:{os.getpid()}"
        # Every process's sessions to this relay or provider count against one cap.
        self.slots = DestinationSlots(
            destination_of(settings.mail_url),
            settings.sessions_per_destination,
            self.worker_name,
            settings.limiter_redis_url,
            ttl=settings.claim_lease,
        )

    @property
    def sessions(self) -> int:
        """Sending sessions this process runs now (1 until measured)."""
        return self.sizer.current

    def transport_for(self, session_no: int) -> Transport:
        """Session `session_no`'s transport, opened on first use and kept."""
        transport = self._transports[session_no]
        if transport is None:
            transport = self._transports[session_no] = get_transport(self.settings)
        return transport

    @property
    def transport(self) -> Transport:
        """The first session's transport."""
        return self.transport_for(0)

    def close(self) -> None:
        """Close every session's transport (QUIT on SMTP) and give their places back."""
        for i, transport in enumerate(self._transports):
            if transport is not None:
                transport.close()
                self._transports[i] = None
        self.slots.release()

    def template_for(self, campaign: Campaign, guid: str) -> MessageTemplate:
        """The campaign's stored render, personalised from here on; never rendered again."""
        template = self._templates.get(campaign.id)
        if template is None:
            rendered, ics = stored_email(campaign)
            template = MessageTemplate(rendered, self.settings, episode_guid=guid, ics=ics)
            self._templates = {campaign.id: template}  # one live campaign at a time is the norm
        return template

    def run(self, campaign_id: int, *, max_batches: int | None = None, time_budget: float = 60.0) -> BatchOutcome:
        """Claim and send batches until none is left, `max_batches` or the time budget is spent."""
        outcome = BatchOutcome()
        started = time.monotonic()
        Session = session_factory(self.settings)
        with Session() as session:
            campaign = session.get(Campaign, campaign_id)
            if campaign is None or campaign.status != CampaignStatus.SENDING:
                session.commit()
                return outcome
            episode = session.get(EpisodeRecord, campaign.episode_id)
            guid = episode.guid if episode else ""
            # End the read transaction now: on SQLite every transaction holds the write lock.
            session.commit()
            template = self.template_for(campaign, guid)
            while max_batches is None or outcome.batches < max_batches:
                if time.monotonic() - started > time_budget or outcome.stopped:
                    break
                if not sendwindow.is_open(self.settings.send_window, self.settings.tz, utcnow()):
                    log.info("campaign %s: outside NEWSLETTER_SEND_WINDOW; the sweeper resumes it", campaign_id)
                    outcome.stopped = "outside the send window"
                    break
                sessions = self.slots.hold(self.sizer.current)
                if sessions == 0:
                    # Other processes hold every session the destination allows: come back soon.
                    outcome.stopped, outcome.paused_for = "every session to the destination is taken", 1.0
                    break
                token = uuid.uuid4().hex
                # The claim is surely ours for a lease from when we asked for it (worker/lease.py).
                lease = Lease(self.settings.claim_lease)
                lease.renew(time.monotonic())
                # Enough rows that each session sends several before the batch's last message
                # holds the others idle, and no more: a process that claims far more than its
                # share leaves the other processes nothing to do.
                size = self.settings.batch_size
                if self.sizer.wanted is None:
                    # Not measured yet: enough for the probe and a little more, so a process
                    # that ends up with few sessions does not sit on a big batch with them.
                    size = min(size, 2 * SessionSizer.PROBE_MESSAGES)
                elif sessions < self.sizer.current:
                    # The destination's cap left fewer sessions than measured: a batch they can
                    # send soon, the rest stays for processes with more.
                    size = ROWS_PER_SESSION * sessions
                elif sessions > 1:
                    size = max(size, ROWS_PER_SESSION * sessions)
                try:
                    rows = claim_batch(session, campaign_id, token, size, self.worker_name)
                except OperationalError:
                    # Its commit may have happened with the reply lost: give back whatever this
                    # token holds rather than leave it to the sweeper.
                    self._release(session, campaign_id, token)
                    raise
                if not rows:
                    break
                outcome.batches += 1
                outcome.claimed += len(rows)
                before, batch_started = outcome.counts(), time.monotonic()
                batch = _Batch(campaign_id, token, template, rows, sessions)
                progress: ProgressWriter | None = None
                try:
                    # Inside the try: a writer that cannot open (the database going away) must
                    # still give the claimed rows back.
                    progress = ProgressWriter.open(session.get_bind(), lease)
                    self._send_batch(Session, session, progress, batch, outcome)
                except ClaimExpired as exc:
                    # Cut off from the database: the sweeper hands the rest to someone else.
                    log.warning("campaign %s: %s; leaving the batch", campaign_id, exc)
                    outcome.stopped = f"claim expired: {exc}"
                finally:
                    try:
                        if progress is not None:
                            progress.close()
                    finally:
                        self._release(session, campaign_id, token, batch.unsent, batch.unrecorded, batch.failures)
                # One line a batch: the ledger has every message, the log need not.
                log.info(
                    "campaign %s: %d sent, %d to retry, %d failed, %d skipped of %d claimed in %.1f s on %d session(s)",
                    campaign_id,
                    *(now - then for now, then in zip(outcome.counts(), before, strict=True)),
                    len(rows),
                    time.monotonic() - batch_started,
                    batch.sessions,
                )
            if not is_sending(session, campaign_id):  # paused or cancelled meanwhile
                settle_cancelled(session, campaign_id)  # a no-op unless cancelled
            elif not finish_if_done(session, campaign_id) and outcome.stopped != "outside the send window":
                # (outside the window no follow-up: the sweeper queues the work when it opens)
                outcome.next_due_in = next_due_in(session, campaign_id)
                if outcome.paused_for and outcome.next_due_in is not None:
                    outcome.next_due_in = max(outcome.next_due_in, outcome.paused_for)
        return outcome

    def _release(
        self,
        session: Session,
        campaign_id: int,
        token: str,
        unsent: Sequence[int] = (),
        unrecorded: Sequence[tuple[int, str]] = (),
        failures: Sequence[tuple[Claimed, Exception]] = (),
    ) -> None:
        """`release_claim` for a batch, after recording the `failures` (a row and what the
        server said of it) whose own records were lost with their connection. Tried again while
        the database is unreachable (a restart, a failover) for up to RELEASE_PATIENCE seconds:
        only this process knows which rows' content never left, which accepted messages lost
        their 'sent' record and which refusals theirs; given up, the sweeper can only call them
        all uncertain. A release the database refuses outright (a constraint, an operator's
        trigger) is made again in parts, so one refused part does not keep the rest back."""
        pending = list(failures)
        deadline, delay = time.monotonic() + RELEASE_PATIENCE, 0.2
        while True:
            try:
                # A statement that failed (the database went away) leaves the session unusable
                # until rolled back.
                session.rollback()
                while pending:
                    row, failure = pending[0]
                    try:
                        self._record_failure(session, token, row, failure, BatchOutcome())
                    except OperationalError:
                        raise
                    except Exception:
                        log.exception("campaign %s: cannot record delivery %s's failure", campaign_id, row.id)
                        session.rollback()
                    pending.pop(0)
                release_claim(session, token, unsent, unrecorded)
                return
            except OperationalError as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning(
                    "campaign %s: cannot release the batch (%s); trying again in %.1f s",
                    campaign_id,
                    next(iter(str(exc.orig or exc).strip().splitlines()), type(exc).__name__),
                    delay,
                )
                time.sleep(delay)
                delay = min(2 * delay, 5.0)
            except DBAPIError:
                log.exception(
                    "campaign %s: the database refused the batch's release; releasing it in parts", campaign_id
                )
                for part in ({"unrecorded": unrecorded}, {"unsent": unsent}, {}):
                    session.rollback()
                    try:
                        release_claim(session, token, **part)
                    except DBAPIError:
                        log.exception("campaign %s: part of the release refused: %s", campaign_id, list(part))
                return

    def _send_batch(
        self,
        Session: sessionmaker[Session],
        session: Session,
        progress: ProgressWriter,
        batch: _Batch,
        outcome: BatchOutcome,
    ) -> None:
        """One session in this thread (the first batch measures how many are wanted on its first
        messages), or several in threads when the measurement asks for them."""
        if self.sizer.wanted is None:
            self._send_rows(session, progress, batch, outcome, self.transport_for(0), probe=self.sizer)
            batch.sessions = self.slots.hold(self.sizer.current) or 1  # the one probing is held
        if not batch.work or batch.stop.is_set():
            return
        if batch.sessions == 1:
            self._send_rows(session, progress, batch, outcome, self.transport_for(0))
        else:
            self._send_in_sessions(Session, session, progress, batch, outcome)

    def _send_in_sessions(
        self,
        Session: sessionmaker[Session],
        session: Session,
        progress: ProgressWriter,
        batch: _Batch,
        outcome: BatchOutcome,
    ) -> None:
        """Send the batch's rows through `batch.sessions` sessions, one thread each, each taking
        the next row when its previous message is done. Their ledger writes are grouped
        (`GroupProgress`); this thread watches the campaign's status meanwhile. The first error
        of any session (ClaimExpired, a database error) stops them all and is raised here."""
        group = GroupProgress(progress)
        n = min(batch.sessions, len(batch.work))
        outcomes = [BatchOutcome() for _ in range(n)]
        errors: list[BaseException] = []

        def session_main(i: int) -> None:
            try:
                with Session() as own:  # only for the rare failure records: one per thread
                    self._send_rows(own, group, batch, outcomes[i], self.transport_for(i), status_checks=False)
            except BaseException as exc:  # raised again below, in the task's own thread
                errors.append(exc)
                batch.stop.set()

        threads = [threading.Thread(target=session_main, args=(i,), name=f"send-session-{i}") for i in range(n)]
        try:
            for t in threads:
                t.start()
            for t in threads:
                while t.is_alive():
                    t.join(STATUS_CHECK_INTERVAL)
                    if t.is_alive() and not batch.stop.is_set() and not is_sending(session, batch.campaign_id):
                        log.info("campaign %s is no longer sending: giving the rest back", batch.campaign_id)
                        batch.stop.set()
        finally:
            batch.stop.set()  # only reached early by an exception here: the sessions stop too
            for t in threads:
                t.join()
            group.close()
        for o in outcomes:
            outcome.add(o)
        if errors:
            # A lapsed lease is the cause when there is one; the others' errors follow from it.
            raise next((e for e in errors if isinstance(e, ClaimExpired)), errors[0])

    def _send_rows(
        self,
        session: Session,
        progress: ProgressWriter | GroupProgress,
        batch: _Batch,
        outcome: BatchOutcome,
        transport: Transport,
        *,
        status_checks: bool = True,
        probe: SessionSizer | None = None,
    ) -> None:
        """One session's loop over the batch's shared rows: each row is written 'sending' (with
        the previous one 'sent') while its envelope is on the wire, and its content leaves only
        once that write is committed. The transport may tell a message's verdict only during the
        next one (`Transport.send_streaming`): it arrives in `begin`, before the next write, so
        still at most one row of this session is 'sending' at any time. `probe`: measure each
        message, stop once it has enough."""
        envelope_from = self.settings.envelope_from
        token, template, campaign_id = batch.token, batch.template, batch.campaign_id
        finished: tuple[int, str] | None = None  # accepted: recorded with the next write
        handed: tuple[Claimed, str] | None = None  # handed over, its verdict still to come

        def record_failure(row: Claimed, failure: Exception) -> None:
            try:
                self._record_failure(session, token, row, failure, outcome)
            except BaseException:
                batch.failures.append((row, failure))  # recorded again at the release
                raise

        def settle(verdict: Exception | None) -> None:
            nonlocal finished, handed
            if handed is not None:
                row, mid = handed
                handed = None
                if verdict is None:
                    finished = (row.id, mid)
                    outcome.sent += 1
                    log.debug("sent %s to %s", mid, row.email)
                else:
                    record_failure(row, verdict)

        checked = time.monotonic()
        for row in batch.rows():
            if batch.stop.is_set():
                batch.put_back(row)
                break
            if (paused := self.limiter.paused_for()) > LONG_PAUSE:
                # Throttled for long (a daily cap): hand the batch back rather than hold it asleep.
                outcome.stopped, outcome.paused_for = f"throttled for {paused:.0f} s", paused
                batch.stop.set()
                break
            # Staff may pause or cancel: look about once a second; the rows not started go back
            # to the queue when the batch releases its claim.
            if status_checks and time.monotonic() - checked >= STATUS_CHECK_INTERVAL:
                checked = time.monotonic()
                if not is_sending(session, campaign_id):
                    log.info("campaign %s is no longer sending: giving the rest of the batch back", campaign_id)
                    batch.stop.set()
                    break
            # Wait for the rate limiter before the row is marked in flight, so a worker killed
            # while waiting leaves nothing uncertain.
            self.limiter.acquire()
            wall, cpu = time.perf_counter(), time.thread_time()
            confirms: list[Callable[[], bool]] = []

            def begin(
                verdict: Exception | None, row: Claimed = row, confirms: list[Callable[[], bool]] = confirms
            ) -> Callable[[], bool]:
                # Marks the row 'sending' (and the previous one 'sent'); the transport waits for
                # that write (`ours`) after the envelope and before the content, so the two
                # round trips overlap.
                nonlocal finished
                settle(verdict)
                record, finished = finished, None
                try:
                    ours = batch.confirm(progress.start(token, row.id, record), row.id, self._wait_out_pause, record)
                except BaseException:
                    batch.note_unrecorded(record)
                    raise
                confirms.append(ours)
                return ours

            failure: Exception | None = None
            try:
                message, mid = template.build(Recipient(row.email, row.name))
            except InputError as exc:  # an address that cannot be written into a header
                failure = PermanentFailure(f"cannot address: {exc}")
            except Exception as exc:  # whatever else breaks one message fails that delivery, not the batch
                log.exception("cannot build the message of delivery %s", row.id)
                failure = PermanentFailure(f"cannot build the message: {type(exc).__name__}: {exc}", suppress=False)
            if failure is not None:
                begin(transport.finish())
            else:
                try:
                    envelope = self.verp.address(row.id) if self.verp else envelope_from
                    transport.send_streaming(envelope, row.email, message, begin)
                except (PermanentFailure, TemporaryFailure, DeliveryUncertain) as exc:
                    failure = exc
                except ConfigError as exc:  # nothing can be sent as configured: stop the campaign
                    if confirms[0]():
                        pause_campaign(session, campaign_id, token, row.id, str(exc))
                    outcome.stopped = f"paused: {exc}"
                    batch.stop.set()
                    break
            if not confirms[0]():  # swept and taken over meanwhile: nothing of ours left to record
                outcome.skipped_rows += 1
                continue
            if failure is None:
                handed = (row, mid)  # its verdict comes with the next message, or below
                if provider_id := transport.provider_message_id:
                    try:
                        record_provider_id(session, row.id, provider_id)
                    except DBAPIError:
                        # Only that message's bounce reports lose their match; an accepted
                        # message must not be lost with it (the next write records it, or the
                        # release does if the database has gone).
                        log.warning("delivery %s: could not record the provider's id %s", row.id, provider_id)
                        session.rollback()
            else:
                record_failure(row, failure)
            if probe is not None and probe.record(time.perf_counter() - wall, time.thread_time() - cpu):
                break
        settle(transport.finish())
        if finished:
            try:
                progress.sent(token, *finished)
            except BaseException:
                batch.note_unrecorded(finished)
                raise

    def _wait_out_pause(self) -> None:
        """A throttling pause that began while this message's envelope and ledger write were
        under way (another session's 429) holds its content too, so no session of any worker
        sends into a pause; a long one ends the batch at its next row instead."""
        if 0 < (paused := self.limiter.paused_for()) <= LONG_PAUSE:
            time.sleep(paused)

    def _record_failure(
        self, session: Session, token: str, row: Claimed, exc: Exception, outcome: BatchOutcome
    ) -> None:
        if isinstance(exc, DeliveryUncertain):
            mark_uncertain(session, token, row.id, str(exc))
            log.warning("uncertain, not resent by itself: %s", exc)
            return
        if isinstance(exc, Throttled):
            # Every worker waits (the shared limiter); this row is tried again, its attempt given back.
            wait = self.limiter.throttle(
                exc.retry_after if exc.retry_after is not None else self.settings.retry_base_delay
            )
            mark_throttled(session, token, row.id, str(exc), wait)
            outcome.retry += 1
            log.warning("throttled, every worker pauses %.1f s: %s", wait, exc)
            return
        if isinstance(exc, PermanentFailure):
            mark_permanent_failure(session, token, row.id, row.subscriber_id, str(exc), suppress=exc.suppress)
            outcome.failed += 1
            log.info("failed for good: %s (%s)%s", row.email, exc, "; address suppressed" if exc.suppress else "")
            return
        delay = mark_temporary_failure(session, token, row.id, str(exc), row.attempts + 1, self.settings)
        if delay is not None:
            outcome.retry += 1
            log.info("will retry %s in %.0f s: %s", row.email, delay, exc)
        else:
            outcome.failed += 1
            log.warning("gave up on %s: %s", row.email, exc)
        if isinstance(exc, SenderRefused):
            log.error("check NEWSLETTER_FROM_ADDR / NEWSLETTER_BOUNCE_ADDR and the SMTP login: %s", exc)


class _Batch:
    """What every session of one batch shares: the campaign, the claim token, the template, the
    rows not started yet, and a stop flag (a paused campaign, a long throttle or an error stops
    them all)."""

    def __init__(self, campaign_id: int, token: str, template: MessageTemplate, rows: list[Claimed], sessions: int):
        self.campaign_id = campaign_id
        self.sessions = sessions  # how many may send it (held in `worker.slots`)
        self.token = token
        self.template = template
        self.work = deque(rows)
        self.stop = threading.Event()
        self.unsent: list[int] = []  # rows written 'sending' whose content never left
        # (id, Message-ID) of messages the server accepted whose 'sent' write failed with the
        # write that carried it (the database went away): recorded again at the release.
        self.unrecorded: list[tuple[int, str]] = []
        # Rows the server refused (or left uncertain) whose failure record was lost the same way.
        self.failures: list[tuple[Claimed, Exception]] = []

    def rows(self) -> Iterator[Claimed]:
        """The next row not started by any session, until none is left (popleft is atomic)."""
        while True:
            try:
                yield self.work.popleft()
            except IndexError:
                return

    def put_back(self, row: Claimed) -> None:
        """A row taken but not started: the next session (or the release) gets it."""
        self.work.appendleft(row)

    def note_unrecorded(self, record: tuple[int, str] | None) -> None:
        """A write carrying `record` (an accepted message's id and Message-ID) failed."""
        if record is not None:
            self.unrecorded.append(record)

    def confirm(
        self,
        ours: Callable[[], bool],
        delivery_id: int,
        before_content: Callable[[], None],
        record: tuple[int, str] | None = None,
    ) -> Callable[[], bool]:
        """`ours`, noting the row as unsent when its write's confirmation fails on the first
        call: that call comes before any content (the transport's go-ahead, or the check of a
        message that was never handed over), so nothing was sent. A later call may follow the
        content, and its failure leaves the row 'sending' for the sweeper to call uncertain.
        `before_content` runs at the first call, before the answer is read (the last moment
        before the content would leave). `record`: the accepted message the same write marks
        sent, noted as unrecorded when the write fails."""
        asked = False

        def confirmed() -> bool:
            nonlocal asked
            if asked:
                return ours()
            asked = True
            try:
                before_content()  # first, so the claim's lease is checked after any wait
                return ours()
            except BaseException:
                self.unsent.append(delivery_id)
                self.note_unrecorded(record)
                raise

        return confirmed

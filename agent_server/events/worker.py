"""The webhook delivery worker: outbox rows to signed POSTs, at least once.

One cycle (``DeliveryWorker.run_once``):

1. **Claim** due events in one short transaction: ``UPDATE outbox_events SET claim_token,
   claimed_until = now + lease, attempts = attempts + 1 WHERE id IN (SELECT ... due ...
   LIMIT n)``. On PostgreSQL the inner SELECT takes ``FOR UPDATE SKIP LOCKED``, so workers
   in other processes pass over rows being claimed and never claim the same attempt; on
   SQLite the transaction holds the write lock (``BEGIN IMMEDIATE``) and the UPDATE's own
   condition decides. Claimed events of agents without a callback URL become ``skipped``.
2. **Deliver** each claimed event (concurrently): resolve the callback URL, refuse private
   addresses (``agent_server.events.urls``), POST the JSON body to the checked address with
   the signature header, 10 s timeout, no redirects followed.
3. **Record** the attempt: a ``webhook_deliveries`` row, and the event becomes ``delivered``
   (2xx), ``pending`` again with ``next_attempt_at`` pushed back exponentially with jitter,
   or ``failed`` after the last attempt. The update is conditional on the claim token: a
   worker whose lease ran out does not overwrite a newer claim.

A worker killed after claiming leaves the lease to expire; the next worker to look then
claims the event again (the interrupted attempt counts as one). So an event is delivered at
least once; receivers deduplicate on its ``id``.
"""

# Long by design: one delivery worker whose claim, lease and retry rules read together.

from __future__ import annotations

import asyncio
import secrets
import signal
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import or_, select, update

from agent_server import __version__
from agent_server.accounts.models import Agent
from agent_server.events.models import OutboxEvent, OutboxStatus, WebhookDelivery
from agent_server.events.outbox import body_bytes
from agent_server.events.signing import SIGNATURE_HEADER, signature_header, webhook_secret
from agent_server.events.urls import IPAddress, Target, UnsafeCallback, resolve_target
from agent_server.kernel.config import Settings
from agent_server.kernel.logs import get_logger
from agent_server.kernel.metrics import WEBHOOK_DELIVERIES
from agent_server.kernel.store import Database, UnitOfWork

if TYPE_CHECKING:
    import httpx

log = get_logger(__name__)

MAX_ERROR_CHARS = 500
# Addresses of one host tried in turn when a connection is refused.
MAX_ADDRESSES = 3
_random = secrets.SystemRandom()


@dataclass(frozen=True)
class WorkerConfig:
    """How the worker delivers; ``from_settings`` reads the operator's settings."""

    pepper: str
    allow_private: bool = False
    timeout_seconds: float = 10.0
    max_attempts: int = 3
    # Delay before the second attempt; doubled for each further one, then stretched by a
    # random factor in [1, 1.5) so that retries of many events do not arrive together.
    backoff_seconds: float = 30.0
    # How long a claim is exclusive; longer than any attempt can take.
    lease_seconds: float = 60.0
    batch_size: int = 20
    poll_seconds: float = 1.0

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerConfig:
        timeout = settings.webhook_timeout_seconds
        return cls(
            pepper=settings.secret_pepper.get_secret_value(),
            allow_private=settings.webhook_allow_private,
            timeout_seconds=timeout,
            max_attempts=max(settings.webhook_max_attempts, 1),
            backoff_seconds=settings.webhook_backoff_seconds,
            lease_seconds=max(60.0, timeout * 3),
        )

    def backoff(self, attempt: int) -> timedelta:
        """How long to wait after failed attempt number ``attempt`` (1-based)."""
        delay = self.backoff_seconds * 2 ** (attempt - 1)
        return timedelta(seconds=delay * _random.uniform(1.0, 1.5))


@dataclass(frozen=True)
class Claim:
    """One claimed attempt: the event, where it goes, and how to sign it."""

    row_id: int
    event_id: str
    type: str
    agent_id: int
    attempt: int
    token: str
    url: str
    secret: str
    body: bytes


@dataclass(frozen=True)
class Outcome:
    """What one attempt got back."""

    status_code: int | None
    error: str | None
    duration_ms: int
    started_at: datetime

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _due(now: datetime) -> Any:
    return (
        select(OutboxEvent.id)
        .where(
            OutboxEvent.status == OutboxStatus.PENDING.value,
            OutboxEvent.next_attempt_at <= now,
            or_(OutboxEvent.claimed_until.is_(None), OutboxEvent.claimed_until <= now),
        )
        .order_by(OutboxEvent.next_attempt_at, OutboxEvent.id)
    )


def _short(error: BaseException | str) -> str:
    text = error if isinstance(error, str) else (str(error) or type(error).__name__)
    return text[:MAX_ERROR_CHARS]


class DeliveryWorker:
    """Delivers outbox events; run several, in as many processes as you like."""

    def __init__(
        self,
        db: Database,
        config: WorkerConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.db = db
        self.config = config
        self._transport = transport

    def client(self) -> httpx.AsyncClient:
        """The HTTP client deliveries go through (no redirects, no proxies from the env)."""
        import httpx  # loaded on first use: a server that never calls out does without it

        return httpx.AsyncClient(
            transport=self._transport,
            timeout=self.config.timeout_seconds,
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": f"AgentServer-Webhooks/{__version__}"},
        )

    # --- claim -----------------------------------------------------------------------------

    async def claim(self, limit: int | None = None) -> list[Claim]:
        """Claim up to ``limit`` due events in one committed transaction."""
        async with self.db.uow() as uow:
            now = uow.clock.now()
            token = uuid.uuid4().hex
            due = _due(now).limit(limit or self.config.batch_size)
            if not self.db.is_sqlite:
                due = due.with_for_update(skip_locked=True)
            lease = now + timedelta(seconds=self.config.lease_seconds)
            rows = (
                await uow.session.execute(
                    update(OutboxEvent)
                    .where(OutboxEvent.id.in_(due.scalar_subquery()))
                    .values(
                        claim_token=token,
                        claimed_until=lease,
                        attempts=OutboxEvent.attempts + 1,
                        updated_at=now,
                    )
                    .returning(OutboxEvent)
                    .execution_options(synchronize_session=False)
                )
            ).scalars()
            events = sorted(rows, key=lambda e: e.id)
            if not events:
                return []
            claims = await self._prepare(uow, events, token)
            await uow.commit()
        return claims

    async def _prepare(self, uow: UnitOfWork, events: list[OutboxEvent], token: str) -> list[Claim]:
        """Turn claimed rows into attempts; settle those that cannot be attempted."""
        agent_ids = sorted({e.agent_id for e in events})
        rows = await uow.session.execute(
            select(Agent.id, Agent.callback_url).where(
                Agent.id.in_(agent_ids), Agent.deleted_at.is_(None)
            )
        )
        urls: dict[int, str | None] = {row.id: row.callback_url for row in rows}
        claims: list[Claim] = []
        secrets_by_agent: dict[int, str] = {}
        for event in events:
            url = urls.get(event.agent_id)
            if not url:
                await self._settle_unattempted(
                    uow, event, OutboxStatus.SKIPPED, "the agent has no callback_url"
                )
                continue
            if event.attempts > self.config.max_attempts:
                await self._settle_unattempted(
                    uow,
                    event,
                    OutboxStatus.FAILED,
                    "the last attempt was interrupted before its result was recorded",
                )
                continue
            if event.agent_id not in secrets_by_agent:
                secrets_by_agent[event.agent_id] = await webhook_secret(
                    uow, self.config.pepper, event.agent_id
                )
            claims.append(
                Claim(
                    row_id=event.id,
                    event_id=event.event_id,
                    type=event.type,
                    agent_id=event.agent_id,
                    attempt=event.attempts,
                    token=token,
                    url=url,
                    secret=secrets_by_agent[event.agent_id],
                    body=body_bytes(event),
                )
            )
        return claims

    async def _settle_unattempted(
        self, uow: UnitOfWork, event: OutboxEvent, status: OutboxStatus, why: str
    ) -> None:
        await uow.session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id == event.id)
            .values(
                status=status.value,
                attempts=OutboxEvent.attempts - 1,  # this claim was no attempt
                claim_token=None,
                claimed_until=None,
                last_error=why,
                updated_at=uow.clock.now(),
            )
            .execution_options(synchronize_session=False)
        )
        log.info(
            "webhook.settled_unattempted",
            event_id=event.event_id,
            agent_id=event.agent_id,
            status=status.value,
            why=why,
        )

    # --- deliver ---------------------------------------------------------------------------

    async def attempt(self, client: httpx.AsyncClient, claim: Claim) -> Outcome:
        """POST one claimed event to its callback URL; never raises for the receiver's faults."""
        import httpx

        started_at = self.db.clock.now()
        began = time.monotonic()

        def outcome(status_code: int | None, error: str | None) -> Outcome:
            duration = int((time.monotonic() - began) * 1000)
            return Outcome(status_code, error, duration, started_at)

        try:
            target = await resolve_target(claim.url, allow_private=self.config.allow_private)
        except UnsafeCallback as exc:
            return outcome(None, f"callback_url refused: {_short(exc)}")
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature_header(claim.secret, timestamp, claim.body),
            "X-Agent-Server-Event": claim.type,
            "X-Agent-Server-Event-Id": claim.event_id,
            "X-Agent-Server-Delivery-Attempt": str(claim.attempt),
        }
        try:
            response = await self._post(client, target, claim.body, headers)
        except httpx.TimeoutException:
            return outcome(None, f"timed out after {self.config.timeout_seconds:g} s")
        except httpx.HTTPError as exc:
            return outcome(None, f"{type(exc).__name__}: {_short(exc)}")
        if 200 <= response.status_code < 300:
            return outcome(response.status_code, None)
        reason = response.reason_phrase or ""
        return outcome(response.status_code, f"HTTP {response.status_code} {reason}".strip())

    async def _post(
        self,
        client: httpx.AsyncClient,
        target: Target,
        body: bytes,
        headers: dict[str, str],
    ) -> httpx.Response:
        """POST to the checked addresses in turn, until one accepts the connection."""
        import httpx

        refused: httpx.ConnectError | None = None
        for address in target.addresses[:MAX_ADDRESSES]:
            request = _pinned_request(client, target, address, body, headers)
            try:
                response = await client.send(request, stream=True)
            except httpx.ConnectError as exc:
                refused = exc
                continue
            await response.aclose()  # the answer's status is all that counts
            return response
        assert refused is not None
        raise refused

    async def record(self, claim: Claim, result: Outcome) -> bool:
        """Log the attempt and move the event on; False if the claim was lost meanwhile."""
        async with self.db.uow() as uow:
            now = uow.clock.now()
            uow.session.add(
                WebhookDelivery(
                    outbox_event_id=claim.row_id,
                    agent_id=claim.agent_id,
                    attempt=claim.attempt,
                    url=claim.url[:500],
                    started_at=result.started_at,
                    status_code=result.status_code,
                    error=result.error,
                    duration_ms=result.duration_ms,
                )
            )
            values: dict[str, Any] = {
                "claim_token": None,
                "claimed_until": None,
                "last_status_code": result.status_code,
                "last_error": result.error,
                "updated_at": now,
            }
            if result.ok:
                values.update(status=OutboxStatus.DELIVERED.value, delivered_at=now)
            elif claim.attempt >= self.config.max_attempts:
                values.update(status=OutboxStatus.FAILED.value)
            else:
                values.update(next_attempt_at=now + self.config.backoff(claim.attempt))
            moved = await uow.session.execute(
                update(OutboxEvent)
                .where(
                    OutboxEvent.id == claim.row_id,
                    OutboxEvent.claim_token == claim.token,
                    OutboxEvent.status == OutboxStatus.PENDING.value,
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            await uow.commit()
        kept = bool(moved.rowcount == 1)  # type: ignore[attr-defined]
        WEBHOOK_DELIVERIES.labels(
            str(values.get("status", "retry")) if kept else "claim_lost"
        ).inc()
        log.info(
            "webhook.attempt",
            event_id=claim.event_id,
            event_type=claim.type,
            agent_id=claim.agent_id,
            attempt=claim.attempt,
            http_status=result.status_code,
            error=result.error,
            duration_ms=result.duration_ms,
            outcome=values.get("status", "retry"),
            claim_kept=kept,
        )
        return kept

    async def deliver(self, client: httpx.AsyncClient, claim: Claim) -> Outcome:
        """Attempt one claimed event and record the outcome."""
        result = await self.attempt(client, claim)
        await self.record(claim, result)
        return result

    # --- loop ------------------------------------------------------------------------------

    async def run_once(self, client: httpx.AsyncClient | None = None) -> int:
        """Claim one batch and deliver it; how many events were claimed."""
        claims = await self.claim()
        if not claims:
            return 0
        async with AsyncExitStack() as stack:
            if client is None:
                client = await stack.enter_async_context(self.client())
            results = await asyncio.gather(
                *(self.deliver(client, c) for c in claims), return_exceptions=True
            )
        for claim, result in zip(claims, results, strict=True):
            if isinstance(result, Exception):
                # Not recorded (the database went away?): delivered again after the lease.
                log.warning("webhook.record_failed", event_id=claim.event_id, error=_short(result))
            elif isinstance(result, BaseException):
                raise result
        return len(claims)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Deliver until ``stop`` is set (or the task is cancelled)."""
        stop = stop or asyncio.Event()
        log.info("webhook.worker_start", max_attempts=self.config.max_attempts)
        async with self.client() as client:
            while not stop.is_set():
                try:
                    claimed = await self.run_once(client)
                except Exception as exc:  # the database is away: keep trying
                    log.warning("webhook.worker_error", error=_short(exc))
                    claimed = 0
                if claimed >= self.config.batch_size:
                    continue
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.config.poll_seconds)
        log.info("webhook.worker_stop")


def _pinned_request(
    client: httpx.AsyncClient,
    target: Target,
    address: IPAddress,
    body: bytes,
    headers: dict[str, str],
) -> httpx.Request:
    """A POST to the address that was checked, with the URL's own Host and TLS name."""
    import httpx

    url = httpx.URL(target.url)
    default_port = 443 if target.scheme == "https" else 80
    host_header = target.host if ":" not in target.host else f"[{target.host}]"
    if url.port is not None and url.port != default_port:
        host_header = f"{host_header}:{url.port}"
    pinned = url.copy_with(host=str(address))
    extensions: dict[str, Any] = {}
    if target.scheme == "https":
        extensions["sni_hostname"] = target.host
    return client.build_request(
        "POST",
        pinned,
        content=body,
        headers={**headers, "Host": host_header},
        extensions=extensions,
    )


class Served(Protocol):
    """What the worker needs of the process's runtime: its settings and database."""

    @property
    def settings(self) -> Settings: ...

    @property
    def db(self) -> Database: ...


@asynccontextmanager
async def start_worker(runtime: Served) -> AsyncIterator[DeliveryWorker | None]:
    """Run a delivery worker alongside the server unless ``Settings.start_worker`` is false."""
    if not runtime.settings.start_worker:
        yield None
        return
    worker = DeliveryWorker(runtime.db, WorkerConfig.from_settings(runtime.settings))
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop), name="webhook-worker")
    try:
        yield worker
    finally:
        stop.set()
        # An attempt cut short here is delivered again once its lease expires.
        with suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(task, 2.0)


async def run_worker(runtime: Served) -> None:
    """``agent-server worker``: deliver until SIGINT or SIGTERM, then close the database."""
    settings = runtime.settings
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await DeliveryWorker(runtime.db, WorkerConfig.from_settings(settings)).run(stop)
    finally:
        await runtime.db.dispose()

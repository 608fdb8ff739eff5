"""The delivery worker: sends due webhook deliveries, retries with backoff, dead-letters after the last try.

A bounded pool of attempts runs at once, and at most ``per_endpoint_concurrency`` of them to one endpoint, so a
hanging or failing endpoint holds a few slots and never the pool: the claim skips endpoints already at their
limit. A claim leases the delivery (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several processes share the
queue; SQLite's single writer serialises claims). A crashed attempt's lease runs out and the delivery is tried
again: delivery is at least once, and the webhook-id (the delivery id) tells the vendor it has seen one before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import httpx
import sqlalchemy as sa
from fastapi import FastAPI
from sqlmodel import Session, col, select

from appstore.apps.models import App
from appstore.installations.models import Installation
from appstore.webhooks import metrics, service
from appstore.webhooks.config import WebhookSettings
from appstore.webhooks.models import WebhookAttempt, WebhookDelivery
from appstore.webhooks.subscriptions import published_webhook
from contracts.webhooks import sign
from kit.crypto import FieldCipher
from kit.db import Database
from kit.netguard import UnsafeUrl, check_outbound_url
from kit.outbox import utcnow

logger = logging.getLogger("appstore.webhooks")

USER_AGENT = "edu-platform-webhooks/1"


@dataclass(frozen=True)
class _Claim:
    delivery_id: str
    lease_token: str
    endpoint: str
    body: str


@dataclass(frozen=True)
class _Prepared:
    url: str
    secrets: list[str]


@dataclass(frozen=True)
class _Result:
    outcome: str  # delivered | http_error | timeout | network_error | unsafe_url
    status_code: int | None
    error: str | None
    started_at: float
    duration: float


class DeliveryWorker:
    """Sends due deliveries from the database, within the pool and per-endpoint limits."""

    def __init__(self, database: Database, settings: WebhookSettings, cipher: FieldCipher, *, production: bool) -> None:
        self.database = database
        self.settings = settings
        self.cipher = cipher
        self.production = production
        self._task: asyncio.Task[None] | None = None
        self._in_flight: dict[asyncio.Task[None], str] = {}
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unregister: list[Callable[[], None]] = []
        self._client: httpx.AsyncClient | None = None
        self._stopping = False

    # -- life cycle

    async def start(self) -> None:
        self._stopping = False
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.settings.timeout_seconds),
            follow_redirects=False,  # a redirect could lead past the address check
            trust_env=False,
            limits=httpx.Limits(max_connections=self.settings.pool_size),
            headers={"User-Agent": USER_AGENT},
        )
        self._unregister = [service.register_waker(self.wake)]
        self._task = asyncio.create_task(self._run(), name="webhook-deliveries")

    async def stop(self) -> None:
        """Stop claiming; let attempts in flight finish (up to the timeout), then cancel what is left (its lease
        runs out and another worker tries again)."""
        self._stopping = True
        for unregister in self._unregister:
            unregister()
        self._unregister = []
        self.wake()
        task, self._task = self._task, None
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._in_flight:
            _done, pending = await asyncio.wait(set(self._in_flight), timeout=self.settings.timeout_seconds + 1)
            for leftover in pending:
                leftover.cancel()
            for leftover in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await leftover
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def wake(self) -> None:
        """Look for due deliveries now (thread-safe: called after a consumer's commit)."""
        loop, event = self._loop, self._wake
        if loop is None or event is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(event.set)

    # -- the claim loop

    async def _run(self) -> None:
        assert self._wake is not None
        while not self._stopping:
            self._wake.clear()  # before looking: a nudge that comes while we look is kept for the wait below
            claimed = 0
            free = self.settings.pool_size - len(self._in_flight)
            if free > 0:
                busy: dict[str, int] = {}
                for endpoint in self._in_flight.values():
                    busy[endpoint] = busy.get(endpoint, 0) + 1
                try:
                    claims = await asyncio.to_thread(self._claim, free, busy)
                except Exception as error:  # a database hiccup must not end the worker
                    logger.warning("webhook claim failed: %s", error)
                    claims = []
                for claim in claims:
                    task = asyncio.create_task(self._attempt(claim), name=f"webhook-{claim.delivery_id}")
                    self._in_flight[task] = claim.endpoint
                    task.add_done_callback(self._finished)
                claimed = len(claims)
            if claimed and claimed == free:
                continue  # there may be more due right now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.poll_seconds)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            logger.error("webhook attempt crashed: %s", task.exception())
        if self._wake is not None:
            self._wake.set()  # a slot (and maybe an endpoint) is free again

    def _claim(self, free: int, busy: dict[str, int]) -> list[_Claim]:
        now = utcnow()
        limit = self.settings.per_endpoint_concurrency
        full = sorted(endpoint for endpoint, count in busy.items() if count >= limit)
        due = (
            select(WebhookDelivery)
            .where(
                WebhookDelivery.status == "pending",
                col(WebhookDelivery.next_attempt_at) <= now,
                sa.or_(col(WebhookDelivery.lease_until).is_(None), col(WebhookDelivery.lease_until) < now),
            )
            .order_by(col(WebhookDelivery.next_attempt_at))
        )
        if full:
            due = due.where(col(WebhookDelivery.endpoint).not_in(full))
        # Look before taking the write lock: an idle worker must not queue behind other writers every poll.
        with self.database.read_session() as session:
            if session.exec(due.with_only_columns(col(WebhookDelivery.id)).limit(1)).first() is None:
                return []
        claims: list[_Claim] = []
        with self.database.session() as session:
            rows = session.exec(due.limit(free * 4).with_for_update(skip_locked=True)).all()
            counts = dict(busy)
            for delivery in rows:
                if len(claims) >= free:
                    break
                if counts.get(delivery.endpoint, 0) >= limit:
                    continue
                if delivery.event_type == "installation.removed" and self._others_pending(session, delivery):
                    continue  # the removal notice is the installation's last delivery: it waits for the others
                counts[delivery.endpoint] = counts.get(delivery.endpoint, 0) + 1
                delivery.lease_token = str(uuid.uuid4())
                delivery.lease_until = now + timedelta(seconds=self.settings.lease_seconds)
                session.add(delivery)
                claims.append(_Claim(delivery.id, delivery.lease_token, delivery.endpoint, delivery.body))
        return claims

    @staticmethod
    def _others_pending(session: Session, delivery: WebhookDelivery) -> bool:
        return (
            session.exec(
                select(WebhookDelivery.id).where(
                    WebhookDelivery.installation_id == delivery.installation_id,
                    WebhookDelivery.status == "pending",
                    WebhookDelivery.id != delivery.id,
                )
            ).first()
            is not None
        )

    # -- one attempt

    async def _attempt(self, claim: _Claim) -> None:
        prepared = await asyncio.to_thread(self._prepare, claim)
        if prepared is None:
            return
        result = await self._send(claim, prepared)
        await asyncio.to_thread(self._record, claim, result)

    def _prepare(self, claim: _Claim) -> _Prepared | None:
        """Where to send and with which secrets; None (and the delivery cancelled) when it must not go out."""
        with self.database.session() as session:
            delivery = session.get(WebhookDelivery, claim.delivery_id)
            if delivery is None or delivery.lease_token != claim.lease_token or delivery.status != "pending":
                return None
            installation = session.get(Installation, delivery.installation_id)
            if delivery.event_type not in service.NOTICES_AFTER_REMOVAL and (
                installation is None or installation.status != "active"
            ):
                self._cancel(delivery, "the installation was removed")
                session.add(delivery)
                return None
            app = session.get(App, delivery.app_id)
            webhook = published_webhook(session, app) if app is not None else None
            if webhook is None or delivery.event_type not in webhook.events:
                self._cancel(delivery, "the app's published version no longer subscribes to this event")
                session.add(delivery)
                return None
            if webhook.url != delivery.url:
                delivery.url = webhook.url  # a newer published version moved the endpoint
                session.add(delivery)
            secrets = service.signing_secrets(session, self.cipher, delivery.app_id)
            return _Prepared(url=webhook.url, secrets=secrets)

    @staticmethod
    def _cancel(delivery: WebhookDelivery, reason: str) -> None:
        service.cancel(delivery, reason=reason)

    async def _send(self, claim: _Claim, prepared: _Prepared) -> _Result:
        started_at = time.time()
        clock = time.monotonic()

        def result(outcome: str, status_code: int | None = None, error: str | None = None) -> _Result:
            return _Result(outcome, status_code, error, started_at, time.monotonic() - clock)

        if self.production:
            try:
                # The DNS answer may have changed since the URL was registered (rebinding): check every time.
                await asyncio.to_thread(check_outbound_url, prepared.url, production=True)
            except UnsafeUrl as unsafe:
                return result("unsafe_url", error=f"endpoint refused: {unsafe}")
        body = claim.body.encode()
        headers = sign(prepared.secrets, message_id=claim.delivery_id, body=body)
        headers["Content-Type"] = "application/json"
        assert self._client is not None
        try:
            async with asyncio.timeout(self.settings.timeout_seconds):
                async with self._client.stream("POST", prepared.url, content=body, headers=headers) as response:
                    status = response.status_code  # the body is not read: the status says it all
        except TimeoutError:
            return result("timeout", error=f"no answer within {self.settings.timeout_seconds:g} s")
        except httpx.TimeoutException:
            return result("timeout", error=f"no answer within {self.settings.timeout_seconds:g} s")
        except httpx.HTTPError as error:
            return result("network_error", error=f"{type(error).__name__}: {error}"[:500])
        if 200 <= status < 300:
            return result("delivered", status)
        return result("http_error", status, f"the endpoint answered HTTP {status}")

    def _record(self, claim: _Claim, result: _Result) -> None:
        metrics.ATTEMPTS.labels(result.outcome).inc()
        metrics.ATTEMPT_DURATION.labels(result.outcome).observe(result.duration)
        with self.database.session() as session:
            delivery = session.get(WebhookDelivery, claim.delivery_id)
            if delivery is None or delivery.lease_token != claim.lease_token:
                return  # the lease ran out and another attempt took over; that one records its own result
            now = utcnow()
            delivery.attempts += 1
            delivery.total_attempts += 1
            session.add(
                WebhookAttempt(
                    delivery_id=delivery.id, number=delivery.total_attempts, trigger=delivery.run_trigger,
                    started_at=now - timedelta(seconds=result.duration), duration_ms=round(result.duration * 1000),
                    outcome=result.outcome, status_code=result.status_code, error=result.error,
                )
            )  # fmt: skip
            delivery.last_status_code = result.status_code
            delivery.last_error = result.error
            delivery.lease_token = None
            delivery.lease_until = None
            if result.outcome == "delivered":
                delivery.status = "delivered"
                delivery.delivered_at = now
                delivery.next_attempt_at = None
                metrics.DELIVERIES.labels("delivered").inc()
                metrics.DELIVERY_LATENCY.observe((now - service.aware(delivery.created_at)).total_seconds())
            elif delivery.attempts <= len(self.settings.retry_delays):
                delay = self.settings.retry_delays[delivery.attempts - 1]
                jitter = self.settings.retry_jitter
                delivery.next_attempt_at = now + timedelta(seconds=delay * random.uniform(1 - jitter, 1 + jitter))
            else:
                delivery.status = "dead"
                delivery.dead_at = now
                delivery.next_attempt_at = None
                metrics.DELIVERIES.labels("dead_lettered").inc()
                logger.info("webhook delivery %s dead-lettered after %d attempts", delivery.id, delivery.attempts)
            session.add(delivery)


def build_worker(app: FastAPI) -> DeliveryWorker:
    """The app store's webhook worker (started with the app when background work is on)."""
    settings = WebhookSettings()
    worker = DeliveryWorker(
        app.state.database, settings, app.state.cipher, production=app.state.settings.environment == "production"
    )
    app.state.webhook_settings = settings
    app.state.webhook_worker = worker
    return worker

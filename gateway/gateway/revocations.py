"""Access tokens revoked before they expire, as the identity provider announces them on NATS.

Every gateway replica follows ``edu.identity.token.revoked`` with its own ordered (ephemeral)
consumer, starting ``lookback`` seconds in the past (at least the longest access-token life), so a
replica that starts or reconnects knows every revocation still in force. It is not ready until it
has caught up with the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime, timedelta

from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from pydantic import ValidationError

from contracts.envelope import EventEnvelope
from contracts.events.base import StreamSpec
from contracts.events.identity import AccessTokensRevokedV1
from kit.messaging import NatsLink

logger = logging.getLogger("gateway.revocations")


class RevocationList:
    """``jti`` → ``exp`` of revoked tokens; entries leave once the token would have expired anyway."""

    def __init__(self) -> None:
        self._revoked: dict[str, int] = {}
        self._next_purge = 0.0

    def revoke(self, jtis: list[str], expires_at: int) -> None:
        for jti in jtis:
            self._revoked[jti] = max(expires_at, self._revoked.get(jti, 0))

    def is_revoked(self, jti: str) -> bool:
        return jti in self._revoked

    def __len__(self) -> int:
        return len(self._revoked)

    def purge(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        if now < self._next_purge:
            return
        self._next_purge = now + 60
        # A minute of slack: the verifier accepts tokens that expired within its leeway.
        self._revoked = {jti: exp for jti, exp in self._revoked.items() if exp + 60 > now}


class RevocationFollower:
    """Feeds :class:`RevocationList` from the identity stream, surviving NATS outages."""

    def __init__(self, link: NatsLink, revocations: RevocationList, *, lookback_seconds: int) -> None:
        self.link = link
        self.revocations = revocations
        self.lookback_seconds = lookback_seconds
        self.stream = StreamSpec("identity").name
        self.subject = AccessTokensRevokedV1.subject()
        self.caught_up = asyncio.Event()
        self._last_sequence = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="revocation-follower")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _config(self) -> ConsumerConfig:
        if self._last_sequence:
            return ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self._last_sequence + 1)
        start = datetime.now(UTC) - timedelta(seconds=self.lookback_seconds)
        return ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=start)

    async def _run(self) -> None:
        # An ordered consumer per replica: every replica must see every revocation. nats-py recreates it
        # after gaps; after a reconnection we start a fresh one from the last sequence we applied.
        while not self._stopping:
            if not await self.link.wait_connected(timeout=1.0) or self.link.jetstream is None:
                continue
            generation = self.link.generation
            subscription = None
            try:
                subscription = await self.link.jetstream.subscribe(
                    self.subject, stream=self.stream, ordered_consumer=True, config=self._config()
                )
                while not self._stopping and self.link.generation == generation:
                    try:
                        message = await subscription.next_msg(timeout=0.5)
                    except TimeoutError:
                        # An ordered consumer delivers what is stored at once: a pause means we are current.
                        self.caught_up.set()
                        continue
                    self._apply(message)
            except asyncio.CancelledError:
                raise
            except NotFoundError:
                # No identity stream yet: nothing has ever been revoked.
                self.caught_up.set()
                await asyncio.sleep(1.0)
            except Exception as error:  # NATS going away, a consumer lost with its server
                logger.info("following token revocations paused (%s); retrying", error)
                await asyncio.sleep(1.0)
            finally:
                if subscription is not None:
                    with contextlib.suppress(Exception):
                        await subscription.unsubscribe()

    def _apply(self, message: Msg) -> None:
        self._last_sequence = message.metadata.sequence.stream
        if message.metadata.num_pending == 0:
            self.caught_up.set()
        try:
            envelope = EventEnvelope.from_json_bytes(message.data)
            payload = AccessTokensRevokedV1.model_validate(envelope.data)
        except (ValidationError, ValueError) as error:
            logger.warning("ignoring a malformed revocation event (%s)", error)
            return
        self.revocations.revoke(payload.jtis, payload.expires_at)
        self.revocations.purge()

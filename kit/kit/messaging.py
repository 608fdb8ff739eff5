"""The service's link to NATS JetStream: a connection that survives broker outages, and its streams.

The link connects in the background and keeps reconnecting forever, so a service starts and serves
requests while NATS is away; the outbox holds events until the link is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import nats
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from contracts.events import StreamSpec
from contracts.messaging import DEAD_LETTER_ROOT, DEAD_LETTER_STREAM, DUPLICATE_WINDOW_SECONDS

logger = logging.getLogger("kit.messaging")


class NatsLink:
    """One NATS connection per process, (re)established in the background."""

    def __init__(self, url: str, *, name: str, streams: list[StreamSpec] | None = None) -> None:
        self.url = url
        self.name = name
        self.streams = streams or []
        self.client: NatsClient | None = None
        self.jetstream: JetStreamContext | None = None
        self.generation = 0  # bumped on every (re)connection; consumers re-create subscriptions on change
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._reconnect_listeners: list[Callable[[], Awaitable[None]]] = []

    @property
    def is_connected(self) -> bool:
        return self.client is not None and self.client.is_connected

    def on_reconnect(self, listener: Callable[[], Awaitable[None]]) -> None:
        self._reconnect_listeners.append(listener)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._connect_forever(), name=f"nats-connect-{self.name}")

    async def wait_connected(self, timeout: float | None = None) -> bool:
        try:
            async with asyncio.timeout(timeout):
                # The event stays set from the first connection on; after a disconnect, wait for the next.
                while not self.is_connected:
                    self._connected.clear()
                    await self._connected.wait()
        except TimeoutError:
            return False
        return True

    async def _connect_forever(self) -> None:
        delay = 0.1
        while True:
            try:
                client = await nats.connect(
                    self.url,
                    name=self.name,
                    connect_timeout=2,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    error_cb=self._on_error,
                )
            except Exception as error:  # connection refused, no servers, timeouts
                logger.warning("NATS at %s not reachable (%s); retrying in %.1fs", self.url, error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.client = client
            self.jetstream = client.jetstream(timeout=5)
            await self._ensure_streams_until_done()
            self.generation += 1
            self._connected.set()
            logger.info("connected to NATS at %s", self.url)
            return

    async def _ensure_streams_until_done(self) -> None:
        delay = 0.1
        while True:
            try:
                await self.ensure_streams()
                return
            except Exception as error:
                logger.warning("could not declare JetStream streams (%s); retrying", error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def ensure_streams(self) -> None:
        """Create or update the service's streams and the dead-letter stream (idempotent)."""
        assert self.jetstream is not None
        configs = [
            StreamConfig(
                name=spec.name,
                subjects=spec.subjects,
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                duplicate_window=DUPLICATE_WINDOW_SECONDS,
            )
            for spec in self.streams
        ]
        configs.append(
            StreamConfig(
                name=DEAD_LETTER_STREAM,
                subjects=[f"{DEAD_LETTER_ROOT}.>"],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                duplicate_window=DUPLICATE_WINDOW_SECONDS,
            )
        )
        for config in configs:
            assert config.name is not None
            try:
                await self.jetstream.stream_info(config.name)
                await self.jetstream.update_stream(config)
            except NotFoundError:
                await self.jetstream.add_stream(config)

    async def _on_disconnected(self) -> None:
        logger.warning("disconnected from NATS at %s", self.url)

    async def _on_reconnected(self) -> None:
        self.generation += 1
        logger.info("reconnected to NATS at %s", self.url)
        with contextlib.suppress(Exception):
            await self.ensure_streams()
        self._connected.set()
        for listener in self._reconnect_listeners:
            await listener()

    async def _on_error(self, error: Exception) -> None:
        logger.debug("NATS client error: %s", error)

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # No drain: nothing in flight needs it (the outbox keeps unacknowledged events, consumers ack
        # explicitly), and nats-py's drain can wait out its whole timeout on the async-publish inbox.
        if self.client is not None and not self.client.is_closed:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await self.client.close()
        self._connected.clear()

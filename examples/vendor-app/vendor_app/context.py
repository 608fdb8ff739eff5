"""What the sample app's routes share: settings, one HTTP client, the in-memory stores and the tool's key."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import httpx
from fastapi import Request

from vendor_app.config import Settings
from vendor_app.keys import ToolKey
from vendor_app.stores import ExpiringStore, UsageTally, WebhookInbox


@dataclass
class AppContext:
    settings: Settings
    http: httpx.AsyncClient
    tool_key: ToolKey
    # The transport of every outbound call (None: the network); tests pass the platform's apps in-process.
    transport: httpx.AsyncBaseTransport | None = None
    # OIDC logins started but not finished (state → verifier, nonce, target), and signed-in sessions.
    pending_logins: ExpiringStore = field(default_factory=lambda: ExpiringStore(ttl_seconds=600))
    sessions: ExpiringStore = field(default_factory=lambda: ExpiringStore(ttl_seconds=8 * 3600))
    # PyLTI1p3's launch data: nonces, states and validated launches, kept server-side.
    lti_storage: ExpiringStore = field(default_factory=lambda: ExpiringStore(ttl_seconds=24 * 3600))
    webhooks: WebhookInbox = field(default_factory=WebhookInbox)
    usage: UsageTally = field(default_factory=UsageTally)
    # Deployments (installations) announced by installation webhooks; removed ones are forgotten.
    deployments: set[str] = field(default_factory=set)
    deployments_lock: threading.Lock = field(default_factory=threading.Lock)
    provider_metadata: dict[str, object] | None = None
    provider_keys: dict[str, object] | None = None


def context_of(request: Request) -> AppContext:
    context: AppContext = request.app.state.context
    return context

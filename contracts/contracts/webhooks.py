"""How the app store signs webhook deliveries, and how a vendor verifies them (the Standard Webhooks scheme).

Every delivery is a POST of a JSON body with three headers:

* ``webhook-id``: the delivery's id; the same id is sent again on every retry and replay, so a vendor
  can drop duplicates;
* ``webhook-timestamp``: seconds since the epoch when this attempt was signed;
* ``webhook-signature``: ``v1,<base64 HMAC-SHA256>`` of ``"{webhook-id}.{webhook-timestamp}.{body}"`` with the
  app's webhook secret; during a secret rotation several space-separated signatures are sent, one per secret.

The secret is shown to the vendor as ``whsec_<base64 key>``; the key is the decoded bytes. A vendor should
refuse a timestamp more than :data:`TOLERANCE_SECONDS` away from its clock (replays) and compare signatures
in constant time. Libraries implementing Standard Webhooks (https://www.standardwebhooks.com) verify these
deliveries as they are. Standard library only, so vendors can copy or depend on this module.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable, Mapping

HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"
SECRET_PREFIX = "whsec_"  # noqa: S105 - the documented prefix, not a secret
TOLERANCE_SECONDS = 300


class WebhookVerificationError(ValueError):
    """The delivery is not signed with the app's secret, or is too old or from the future."""


def new_secret() -> str:
    """A fresh webhook secret in its shown form (``whsec_`` and 32 random bytes in base64)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(encoded, validate=True)
    except ValueError as exc:
        raise ValueError("a webhook secret is 'whsec_' followed by base64") from exc


def signature(secret: str, *, message_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64>`` of the HMAC-SHA256 of ``id.timestamp.body`` under ``secret``."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def sign(
    secrets_in_use: Iterable[str], *, message_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The three headers of a delivery, signed with every secret in use (more than one during a rotation)."""
    moment = int(time.time()) if timestamp is None else timestamp
    signatures = " ".join(
        signature(secret, message_id=message_id, timestamp=moment, body=body) for secret in secrets_in_use
    )
    return {HEADER_ID: message_id, HEADER_TIMESTAMP: str(moment), HEADER_SIGNATURE: signatures}


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> None:
    """Raise :class:`WebhookVerificationError` unless a signature of the delivery is by ``secret`` and fresh."""
    lowered = {key.lower(): value for key, value in headers.items()}
    message_id = lowered.get(HEADER_ID)
    raw_timestamp = lowered.get(HEADER_TIMESTAMP)
    presented = lowered.get(HEADER_SIGNATURE)
    if not message_id or not raw_timestamp or not presented:
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature header")
    try:
        timestamp = int(raw_timestamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not a number of seconds") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookVerificationError("webhook-timestamp is too far from now: a replayed or delayed delivery")
    expected = signature(secret, message_id=message_id, timestamp=timestamp, body=body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in presented.split()):
        raise WebhookVerificationError("no signature matches the secret")

"""Webhook signatures: what the app store signs, a vendor verifies, and nothing else passes."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from contracts import webhooks

BODY = b'{"type":"installation.removed","data":{"delete_data_by":"2026-12-25"}}'


def test_a_signed_delivery_verifies_and_follows_the_standard_webhooks_scheme() -> None:
    secret = webhooks.new_secret()
    headers = webhooks.sign([secret], message_id="msg_1", body=BODY, timestamp=1_780_000_000)
    webhooks.verify(secret, headers, BODY, now=1_780_000_010)

    # The scheme as documented for vendors: base64 HMAC-SHA256 of "id.timestamp.body" with the decoded key.
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, b"msg_1.1780000000." + BODY, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h, b: (h, b + b" "),
        lambda h, b: ({**h, "webhook-id": "msg_2"}, b),
        lambda h, b: ({**h, "webhook-timestamp": str(int(h["webhook-timestamp"]) + 1)}, b),
        lambda h, b: ({k: v for k, v in h.items() if k != "webhook-signature"}, b),
    ],
)
def test_a_changed_body_id_or_timestamp_or_a_missing_signature_fails(tamper: object) -> None:
    secret = webhooks.new_secret()
    headers = webhooks.sign([secret], message_id="msg_1", body=BODY, timestamp=1_780_000_000)
    changed_headers, changed_body = tamper(headers, BODY)  # type: ignore[operator]
    with pytest.raises(webhooks.WebhookVerificationError):
        webhooks.verify(secret, changed_headers, changed_body, now=1_780_000_000)


def test_old_deliveries_are_refused_as_replays() -> None:
    secret = webhooks.new_secret()
    headers = webhooks.sign([secret], message_id="msg_1", body=BODY, timestamp=1_780_000_000)
    with pytest.raises(webhooks.WebhookVerificationError, match="too far"):
        webhooks.verify(secret, headers, BODY, now=1_780_000_000 + webhooks.TOLERANCE_SECONDS + 1)


def test_during_a_rotation_either_secret_verifies() -> None:
    old, new = webhooks.new_secret(), webhooks.new_secret()
    headers = webhooks.sign([new, old], message_id="msg_1", body=BODY, timestamp=1_780_000_000)
    webhooks.verify(old, headers, BODY, now=1_780_000_000)
    webhooks.verify(new, headers, BODY, now=1_780_000_000)
    with pytest.raises(webhooks.WebhookVerificationError):
        webhooks.verify(webhooks.new_secret(), headers, BODY, now=1_780_000_000)

"""Request signing for the data-sharing platform: an app key plus an HMAC over the request, a timestamp and a nonce.

Government data-sharing gateways authenticate calling systems with an app id (access key) and a shared secret;
each request carries a timestamp and a one-time nonce inside the signed text so that a captured request cannot be
replayed. The scheme used here:

Headers sent with every request::

    X-App-Id:     the caller's app id
    X-Timestamp:  unix time in whole seconds
    X-Nonce:      16-64 characters of [A-Za-z0-9-], never reused
    X-Signature:  base64(HMAC-SHA256(secret, canonical request))

The canonical request is six lines joined by ``\\n`` (no trailing newline)::

    METHOD                 upper case, e.g. POST
    /path                  the URL path exactly as sent, percent-encoded
    canonical query        query parameters sorted by name then value, RFC 3986 encoded, joined by "&" ("" if none)
    timestamp              the X-Timestamp value
    nonce                  the X-Nonce value
    hex(SHA-256(body))     of the exact body bytes (the hash of b"" when there is no body)

The receiver refuses a request whose timestamp is more than :data:`CLOCK_SKEW_SECONDS` from its own clock, whose
nonce it has already seen from that app within the window, or whose signature does not match.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Mapping
from urllib.parse import parse_qsl, quote

__all__ = [
    "CLOCK_SKEW_SECONDS",
    "SignatureError",
    "SignatureVerifier",
    "canonical_request",
    "sign",
    "signed_headers",
]

CLOCK_SKEW_SECONDS = 300

APP_ID_HEADER = "X-App-Id"
TIMESTAMP_HEADER = "X-Timestamp"
NONCE_HEADER = "X-Nonce"
SIGNATURE_HEADER = "X-Signature"

_NONCE = re.compile(r"[A-Za-z0-9-]{16,64}")


class SignatureError(Exception):
    """A request's signature headers are missing, stale, replayed or wrong. ``str(error)`` is ``"中文；English"``."""

    def __init__(self, code: str, message_zh: str, message_en: str) -> None:
        self.code = code
        self.message_zh = message_zh
        self.message_en = message_en
        super().__init__(f"{message_zh}；{message_en}")


def _canonical_query(query: str) -> str:
    pairs = sorted(parse_qsl(query, keep_blank_values=True))
    return "&".join(f"{quote(name, safe='-_.~')}={quote(value, safe='-_.~')}" for name, value in pairs)


def canonical_request(method: str, path: str, query: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """The text that is signed, as specified in the module docstring."""
    lines = (method.upper(), path, _canonical_query(query), timestamp, nonce, hashlib.sha256(body).hexdigest())
    return "\n".join(lines).encode()


def sign(secret: str, method: str, path: str, query: str, timestamp: str, nonce: str, body: bytes) -> str:
    """base64(HMAC-SHA256(secret, canonical request))."""
    digest = hmac.new(
        secret.encode(), canonical_request(method, path, query, timestamp, nonce, body), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode()


def signed_headers(
    app_id: str,
    secret: str,
    method: str,
    path: str,
    query: str,
    body: bytes,
    *,
    now: float | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The four signature headers for one request; a fresh nonce unless one is given."""
    timestamp = str(int(time.time() if now is None else now))
    nonce = nonce or secrets.token_hex(16)
    return {
        APP_ID_HEADER: app_id,
        TIMESTAMP_HEADER: timestamp,
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: sign(secret, method, path, query, timestamp, nonce, body),
    }


class SignatureVerifier:
    """Checks signed requests for a set of app ids and remembers nonces long enough to refuse replays."""

    def __init__(
        self,
        secrets_by_app_id: Mapping[str, str],
        *,
        skew_seconds: int = CLOCK_SKEW_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secrets = dict(secrets_by_app_id)
        self._skew = skew_seconds
        self._clock = clock
        # (app id, nonce) -> when it may be forgotten. A nonce older than the skew window cannot come back:
        # its timestamp would be refused as stale.
        self._seen: dict[tuple[str, str], float] = {}

    def verify(self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes) -> str:
        """Return the caller's app id, or raise :class:`SignatureError`; a verified nonce is used up."""
        lowered = {name.lower(): value for name, value in headers.items()}
        app_id = lowered.get(APP_ID_HEADER.lower())
        timestamp = lowered.get(TIMESTAMP_HEADER.lower())
        nonce = lowered.get(NONCE_HEADER.lower())
        signature = lowered.get(SIGNATURE_HEADER.lower())
        if not (app_id and timestamp and nonce and signature):
            raise SignatureError(
                "missing",
                "缺少签名请求头 X-App-Id、X-Timestamp、X-Nonce 或 X-Signature",
                "the X-App-Id, X-Timestamp, X-Nonce and X-Signature headers are all required",
            )
        secret = self._secrets.get(app_id)
        if secret is None:
            raise SignatureError("unknown_app", "应用标识未登记", "the app id is not registered")
        if not timestamp.isdigit():
            raise SignatureError("timestamp", "X-Timestamp 应为 Unix 秒数", "X-Timestamp must be unix seconds")
        now = self._clock()
        if abs(now - int(timestamp)) > self._skew:
            raise SignatureError(
                "stale",
                f"请求时间戳与平台时间相差超过 {self._skew} 秒，请校准时钟",
                f"the request timestamp is more than {self._skew} s away from the platform clock; check the clock",
            )
        if not _NONCE.fullmatch(nonce):
            raise SignatureError(
                "nonce", "X-Nonce 应为 16–64 位字母、数字或连字符", "X-Nonce must be 16-64 letters, digits or hyphens"
            )
        expected = sign(secret, method, path, query, timestamp, nonce, body)
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise SignatureError("signature", "请求签名不匹配", "the request signature does not match")
        self._forget_expired(now)
        if (app_id, nonce) in self._seen:
            raise SignatureError(
                "replay", "该请求已处理过（随机数重复）", "this request was already seen (nonce reused)"
            )
        self._seen[(app_id, nonce)] = now + 2 * self._skew
        return app_id

    def _forget_expired(self, now: float) -> None:
        # Entries are added in time order, so the expired ones are at the front of the dict.
        while self._seen:
            oldest = next(iter(self._seen))
            if self._seen[oldest] > now:
                break
            del self._seen[oldest]

"""HTTP client of the city data-sharing platform (政务数据共享交换平台), and the protocol it speaks.

Protocol (served by the real platform's gateway and by :mod:`enrollment.dataexchange.simulator`):

===================================  =============================================  =============================
endpoint                             JSON request body                              ``record`` in the answer
===================================  =============================================  =============================
``POST /v1/household/query``         ``{"id_number"}``                              HouseholdRecord or null
``POST /v1/property/query``          ``{"owner_id_numbers": [...]}``                list of PropertyRecord
``POST /v1/residence-permit/query``  ``{"id_number"}``                              ResidencePermitRecord or null
``POST /v1/social-insurance/query``  ``{"id_number"}``                              SocialInsuranceRecord or null
``POST /v1/identity/verify``         ``{"id_number", "name"}``                      IdentityCheck
``POST /v1/guardianship/verify``     ``{"child_id_number", "guardian_id_number"}``  GuardianshipCheck
===================================  =============================================  =============================

Every answer is ``200`` with ``{"record": ..., "source": "公安户籍", "reference": "...", "checked_at": "<ISO 8601>"}``
(the JSON form of :class:`~enrollment.dataexchange.contract.Answer`); "nothing found" is a null record or an empty
list, not a 404. Failures are RFC 9457 problem+json: 401 for a bad signature, 422 for a malformed body, 503 when
the platform is overloaded. Resident ID numbers travel only in request bodies, never in URLs, which end up in
access logs of every proxy on the way.

Every request is signed as described in :mod:`enrollment.dataexchange.signing` (``X-App-Id``, ``X-Timestamp``,
``X-Nonce``, ``X-Signature``); a retry is signed again with a new nonce.

Failures: timeouts, connection errors and 502/503/504 are retried with exponential backoff, then raise
:class:`~enrollment.dataexchange.contract.DataExchangeUnavailable`; other 5xx and 429 raise it at once (the
caller keeps the application and asks again later). Other 4xx raise
:class:`~enrollment.dataexchange.contract.DataExchangeRejected` and are never retried.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import httpx
from pydantic import ValidationError

from .contract import (
    Answer,
    DataExchangeRejected,
    DataExchangeUnavailable,
    GuardianshipCheck,
    HouseholdRecord,
    IdentityCheck,
    PropertyRecord,
    ResidencePermitRecord,
    SocialInsuranceRecord,
)
from .signing import signed_headers

__all__ = [
    "GUARDIANSHIP_PATH",
    "HOUSEHOLD_PATH",
    "IDENTITY_PATH",
    "PROPERTY_PATH",
    "RESIDENCE_PERMIT_PATH",
    "SOCIAL_INSURANCE_PATH",
    "HttpDataExchange",
]

HOUSEHOLD_PATH = "/v1/household/query"
PROPERTY_PATH = "/v1/property/query"
RESIDENCE_PERMIT_PATH = "/v1/residence-permit/query"
SOCIAL_INSURANCE_PATH = "/v1/social-insurance/query"
IDENTITY_PATH = "/v1/identity/verify"
GUARDIANSHIP_PATH = "/v1/guardianship/verify"

RETRIED_STATUSES = frozenset({502, 503, 504})

logger = logging.getLogger("enrollment.dataexchange")

RecordT = TypeVar("RecordT")


def _problem_detail(response: httpx.Response) -> str:
    """The ``detail`` (or ``title``) and field errors of a problem+json answer, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if not isinstance(body, dict):
        return ""
    parts = [str(body.get("detail") or body.get("title") or "")]
    errors = body.get("errors")
    if isinstance(errors, list):
        parts += [f"{error.get('field')}: {error.get('message')}" for error in errors if isinstance(error, dict)]
    return "; ".join(part for part in parts if part)[:500]


class HttpDataExchange:
    """The :class:`~enrollment.dataexchange.contract.DataExchange` of the platform's HTTP gateway.

    ``base_url`` may carry a path prefix (``https://dsp.example.gov.cn/gateway``). ``timeout_seconds`` bounds each
    attempt as a whole; ``retries`` is the number of extra attempts after a retryable failure, waiting
    ``backoff_seconds`` × 2ⁿ (with jitter, at most ``max_backoff_seconds``) in between. Pass ``client`` to reuse
    a connection pool or to talk to an in-process app (``httpx.ASGITransport``); a given client is not closed by
    :meth:`aclose`. ``clock`` (unix seconds) stamps the signatures.
    """

    def __init__(
        self,
        base_url: str,
        *,
        app_id: str,
        secret: str,
        timeout_seconds: float = 5.0,
        retries: int = 2,
        backoff_seconds: float = 0.2,
        max_backoff_seconds: float = 5.0,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be 0 or more")
        self._base_url = base_url.rstrip("/")
        self._app_id = app_id
        self._secret = secret
        self._timeout = timeout_seconds
        self._retries = retries
        self._backoff = backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(timeout_seconds))
        self._clock = clock

    async def household(self, child_id_number: str) -> Answer[HouseholdRecord | None]:
        """The person's household registration in the city, or ``None``."""
        return await self._call(HOUSEHOLD_PATH, {"id_number": child_id_number}, Answer[HouseholdRecord | None])

    async def properties(self, owner_id_numbers: Sequence[str]) -> Answer[tuple[PropertyRecord, ...]]:
        """Every residential property owned (also jointly) by any of these people."""
        if isinstance(owner_id_numbers, str):
            raise TypeError("owner_id_numbers must be a sequence of ID numbers, not one string")
        if not owner_id_numbers:
            raise ValueError("owner_id_numbers must name at least one person")
        return await self._call(
            PROPERTY_PATH, {"owner_id_numbers": list(owner_id_numbers)}, Answer[tuple[PropertyRecord, ...]]
        )

    async def residence_permit(self, id_number: str) -> Answer[ResidencePermitRecord | None]:
        """The person's residence permit in the city, or ``None``."""
        return await self._call(RESIDENCE_PERMIT_PATH, {"id_number": id_number}, Answer[ResidencePermitRecord | None])

    async def social_insurance(self, id_number: str) -> Answer[SocialInsuranceRecord | None]:
        """The person's unbroken run of social insurance contributions, or ``None``."""
        return await self._call(SOCIAL_INSURANCE_PATH, {"id_number": id_number}, Answer[SocialInsuranceRecord | None])

    async def verify_identity(self, id_number: str, name: str) -> Answer[IdentityCheck]:
        """Whether ``name`` is the registered name of ``id_number``."""
        return await self._call(IDENTITY_PATH, {"id_number": id_number, "name": name}, Answer[IdentityCheck])

    async def verify_guardianship(self, child_id_number: str, guardian_id_number: str) -> Answer[GuardianshipCheck]:
        """Whether the adult is the child's father or mother."""
        payload = {"child_id_number": child_id_number, "guardian_id_number": guardian_id_number}
        return await self._call(GUARDIANSHIP_PATH, payload, Answer[GuardianshipCheck])

    async def aclose(self) -> None:
        """Close the connection pool if this object created it."""
        if self._owns_client:
            await self._client.aclose()

    async def _call(self, path: str, payload: dict[str, Any], answer_type: type[Answer[RecordT]]) -> Answer[RecordT]:
        url = httpx.URL(self._base_url + path)
        raw_path = url.raw_path.split(b"?", 1)[0].decode("ascii")
        query = url.query.decode("ascii")
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        request_id = uuid.uuid4().hex
        failure: DataExchangeUnavailable | None = None
        for attempt in range(self._retries + 1):
            if attempt:
                await asyncio.sleep(self._backoff_delay(attempt))
            headers = {
                "Content-Type": "application/json; charset=utf-8",
                "Accept": "application/json",
                "X-Request-Id": request_id,
                **signed_headers(self._app_id, self._secret, "POST", raw_path, query, body, now=self._clock()),
            }
            try:
                # httpx's own timeouts apply per network operation and not at all over ASGI; this bounds the
                # whole attempt.
                async with asyncio.timeout(self._timeout):
                    response = await self._client.post(url, content=body, headers=headers)
            except (TimeoutError, httpx.TimeoutException):
                failure = DataExchangeUnavailable(
                    f"数据共享平台 {self._timeout:g} 秒内未响应",
                    f"the data-sharing platform did not answer within {self._timeout:g} s",
                )
            except httpx.TransportError as error:
                failure = DataExchangeUnavailable(
                    f"无法连接数据共享平台（{type(error).__name__}）",
                    f"could not reach the data-sharing platform ({type(error).__name__})",
                )
            else:
                if response.status_code == 200:
                    return self._parse(response, answer_type)
                if response.status_code not in RETRIED_STATUSES:
                    raise self._failure_for(response)
                failure = DataExchangeUnavailable(
                    f"数据共享平台暂时不可用（HTTP {response.status_code}）",
                    f"the data-sharing platform is temporarily unavailable (HTTP {response.status_code})",
                    status=response.status_code,
                )
            logger.warning(
                "data-sharing platform call %s failed (attempt %d of %d, request %s): %s",
                path,
                attempt + 1,
                self._retries + 1,
                request_id,
                failure.message_en,
            )
        assert failure is not None
        raise failure

    def _backoff_delay(self, attempt: int) -> float:
        # Jitter spreads the retries of many applications that failed at the same moment.
        delay = min(self._backoff * 2 ** (attempt - 1), self._max_backoff)
        return delay * random.uniform(0.5, 1.0)

    @staticmethod
    def _parse(response: httpx.Response, answer_type: type[Answer[RecordT]]) -> Answer[RecordT]:
        try:
            return answer_type.model_validate_json(response.content)
        except ValidationError:
            raise DataExchangeUnavailable(
                "数据共享平台返回的内容无法解析",
                "the data-sharing platform answered with a body that does not match the protocol",
                status=response.status_code,
            ) from None

    @staticmethod
    def _failure_for(response: httpx.Response) -> DataExchangeRejected | DataExchangeUnavailable:
        status = response.status_code
        detail = _problem_detail(response) or None
        if status == 429 or status >= 500:
            # The platform is busy or broken: the application is kept and checked again later, not now.
            return DataExchangeUnavailable(
                f"数据共享平台暂时无法处理请求（HTTP {status}）",
                f"the data-sharing platform cannot handle the request now (HTTP {status})",
                status=status,
                detail=detail,
            )
        return DataExchangeRejected(
            f"数据共享平台拒绝了请求（HTTP {status}）",
            f"the data-sharing platform refused the request (HTTP {status})",
            status=status,
            detail=detail,
        )

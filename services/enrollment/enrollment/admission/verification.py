"""Verifying applications through the city's data-sharing platform, in the background, retried until answered.

An application is saved at once with every fact ``pending``; this worker asks the platform and stores each answer
with its source, reference and time. When the platform times out or fails, the fact stays pending and is tried
again after the next of ``retry_seconds`` (the family sees "verification pending"); nothing is lost when the
service restarts, because the work list is the table itself. Several replicas share the work: a claim leases the
rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL) before the slow calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from prometheus_client import Counter
from sqlmodel import Session, col, select

from enrollment.admission.models import AdmissionSeason, Application, Verification
from enrollment.admission.service import HOUSEHOLD_NUMBER, RESIDENT_ID, reassess
from enrollment.dataexchange import DataExchange, DataExchangeError, HouseholdRecord
from enrollment.directory.models import DirectoryPerson
from kit.crypto import FieldCipher
from kit.db import Database
from kit.outbox import utcnow

logger = logging.getLogger("enrollment.verification")

DOCUMENTS_AVOIDED = Counter(
    "edu_admission_documents_avoided_total",
    "Facts verified through the data-sharing platform, each a paper document a family did not have to bring",
    ["kind"],
)
VERIFICATION_FAILURES = Counter(
    "edu_admission_verification_failures_total", "Calls to the data-sharing platform that got no answer", ["kind"]
)
LEASE = timedelta(seconds=120)


@dataclass
class _Outcome:
    status: str  # verified | not_found | mismatch
    source: str
    reference: str
    checked_at: Any
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Failure:
    error: str


@dataclass(frozen=True)
class _Work:
    application_id: str
    child_id: str
    applicant_id: str
    applicant_name: str | None
    household_number: str
    kinds: tuple[str, ...]


class Verifier:
    """The background worker that answers pending verifications."""

    def __init__(
        self, database: Database, cipher: FieldCipher, exchange: DataExchange, *, retry_seconds: Sequence[float],
        poll_seconds: float, insurance_city: str, batch_size: int = 20,
    ) -> None:  # fmt: skip
        self.database = database
        self.cipher = cipher
        self.exchange = exchange
        self.retry_seconds = list(retry_seconds) or [60.0]
        self.poll_seconds = poll_seconds
        self.insurance_city = insurance_city
        self.batch_size = batch_size
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def wake(self) -> None:
        """Look for work now (thread-safe: called after commits in worker threads)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="admission-verifier")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        done, _ = await asyncio.wait({task}, timeout=10)
        if not done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while not self._stopping:
            try:
                self._wake.clear()
                handled = await self.run_once()
            except Exception:
                logger.exception("verification round failed; retrying")
                handled = 0
            if handled == 0 and not self._stopping:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_seconds):
                        await self._wake.wait()

    async def run_once(self) -> int:
        """Verify the applications that have facts due; returns how many were worked on."""
        work = await asyncio.to_thread(self._claim)
        for item in work:
            if self._stopping:
                break
            results = await self._ask(item)
            await asyncio.to_thread(self._store, item, results)
        return len(work)

    # ------------------------------------------------------------------------------------------- database

    def _claim(self) -> list[_Work]:
        now = utcnow()
        with self.database.session() as session:
            statement = (
                select(Verification)
                .where(Verification.status == "pending", col(Verification.next_attempt_at) <= now)
                .order_by(col(Verification.next_attempt_at))
                .limit(self.batch_size * 6)
            )
            if session.get_bind().dialect.name == "postgresql":
                statement = statement.with_for_update(skip_locked=True)
            rows = list(session.exec(statement))
            kinds: dict[str, list[str]] = {}
            for row in rows:
                if row.application_id in kinds or len(kinds) < self.batch_size:
                    kinds.setdefault(row.application_id, []).append(row.kind)
                    row.next_attempt_at = now + LEASE
                    session.add(row)
            work = []
            for application_id, pending in kinds.items():
                application = session.get(Application, application_id)
                if application is None or application.status == "withdrawn":
                    continue
                applicant = session.get(DirectoryPerson, application.applicant_person_id)
                work.append(
                    _Work(
                        application_id=application_id,
                        child_id=self.cipher.decrypt(RESIDENT_ID, application.child_id_cipher),
                        applicant_id=self.cipher.decrypt(RESIDENT_ID, application.applicant_id_cipher),
                        applicant_name=applicant.name if applicant is not None else None,
                        household_number=self.cipher.decrypt(HOUSEHOLD_NUMBER, application.household_number_cipher),
                        kinds=tuple(sorted(pending)),
                    )
                )
            return work

    def _store(self, work: _Work, results: dict[str, _Outcome | _Failure]) -> None:
        now = utcnow()
        with self.database.session() as session:
            application = session.get(Application, work.application_id)
            if application is None:
                return
            for verification in session.exec(
                select(Verification).where(
                    Verification.application_id == work.application_id, col(Verification.kind).in_(list(results))
                )
            ):
                if verification.status != "pending":
                    continue  # decided meanwhile (a reviewed document)
                result = results[verification.kind]
                verification.attempts += 1
                if isinstance(result, _Failure):
                    delay = self.retry_seconds[min(verification.attempts - 1, len(self.retry_seconds) - 1)]
                    verification.next_attempt_at = now + timedelta(seconds=delay)
                    verification.last_error = result.error[:300]
                    VERIFICATION_FAILURES.labels(verification.kind).inc()
                else:
                    verification.status = result.status
                    verification.source = result.source[:64]
                    verification.reference = result.reference[:100]
                    verification.checked_at = result.checked_at
                    verification.facts = json.dumps(result.facts, ensure_ascii=False, default=str)
                    verification.next_attempt_at = None
                    verification.last_error = None
                    if result.status == "verified":
                        DOCUMENTS_AVOIDED.labels(verification.kind).inc()
                session.add(verification)
            session.flush()
            season = session.get(AdmissionSeason, application.season_id)
            if season is not None:
                reassess(session, application, season)

    # ------------------------------------------------------------------------------------------- platform

    async def _ask(self, work: _Work) -> dict[str, _Outcome | _Failure]:
        results: dict[str, _Outcome | _Failure] = {}
        household_record: HouseholdRecord | None = None
        if "household" in work.kinds or "property" in work.kinds:
            try:
                answer = await self.exchange.household(work.child_id)
                household_record = answer.record
                if "household" in work.kinds:
                    results["household"] = self._household(answer, work)
            except DataExchangeError as error:
                for kind in ("household", "property"):
                    if kind in work.kinds:
                        results[kind] = _Failure(str(error))
        for kind in work.kinds:
            if kind in results:
                continue
            try:
                results[kind] = await self._ask_one(kind, work, household_record)
            except DataExchangeError as error:
                results[kind] = _Failure(str(error))
        return results

    @staticmethod
    def _household(answer: Any, work: _Work) -> _Outcome:
        record: HouseholdRecord | None = answer.record
        if record is None:
            return _Outcome("not_found", answer.source, answer.reference, answer.checked_at)
        facts = {
            "address": record.address, "registered_on": record.registered_on.isoformat(),
            "district_code": record.district_code,
        }  # fmt: skip
        status = "verified" if record.household_number == work.household_number else "mismatch"
        return _Outcome(status, answer.source, answer.reference, answer.checked_at, facts)

    async def _ask_one(self, kind: str, work: _Work, household: HouseholdRecord | None) -> _Outcome:
        if kind == "identity":
            answer = await self.exchange.verify_identity(work.applicant_id, work.applicant_name or "")
            status = "verified" if answer.record.matches else "mismatch"
            return _Outcome(status, answer.source, answer.reference, answer.checked_at, {})
        if kind == "guardianship":
            guardianship = await self.exchange.verify_guardianship(work.child_id, work.applicant_id)
            found = guardianship.record.matches
            facts = {"basis": guardianship.record.basis} if found else {}
            return _Outcome(
                "verified" if found else "not_found", guardianship.source, guardianship.reference,
                guardianship.checked_at, facts,
            )  # fmt: skip
        if kind == "property":
            owners = [work.applicant_id, *(household.guardian_id_numbers if household else ())]
            properties = await self.exchange.properties(list(dict.fromkeys(owners)))
            items = [
                {"address": item.address, "registered_on": item.registered_on.isoformat()} for item in properties.record
            ]
            return _Outcome(
                "verified" if items else "not_found", properties.source, properties.reference, properties.checked_at,
                {"properties": items},
            )  # fmt: skip
        if kind == "residence_permit":
            permit = await self.exchange.residence_permit(work.applicant_id)
            if permit.record is None:
                return _Outcome("not_found", permit.source, permit.reference, permit.checked_at)
            facts = {"address": permit.record.address, "valid_until": permit.record.valid_until.isoformat()}
            return _Outcome("verified", permit.source, permit.reference, permit.checked_at, facts)
        if kind == "social_insurance":
            insurance = await self.exchange.social_insurance(work.applicant_id)
            if insurance.record is None:
                return _Outcome("not_found", insurance.source, insurance.reference, insurance.checked_at)
            facts = {
                "months": insurance.record.months, "since": insurance.record.since.isoformat(),
                "city": insurance.record.city, "in_city": insurance.record.city == self.insurance_city,
            }  # fmt: skip
            return _Outcome("verified", insurance.source, insurance.reference, insurance.checked_at, facts)
        raise ValueError(f"unknown verification kind {kind!r}")


def wake_on_commit(session: Session, verifier: Verifier | None) -> None:
    """Let the unit of work wake the verifier once it commits new pending facts."""
    if verifier is not None:
        session.info["verifier_wake"] = verifier.wake

"""A faithful simulator of the city data-sharing platform, in-process and over HTTP, fed from a CSV file.

:class:`SimulatedDataExchange` answers the :class:`~enrollment.dataexchange.contract.DataExchange` lookups from
a :class:`RecordSet`; :func:`create_simulator_app` serves the same answers over the HTTP protocol of
:mod:`enrollment.dataexchange.http`, verifying request signatures (300 s clock-skew window, nonces never
accepted twice) and with fault injection for tests (latency, "fail the next N calls with 503").

Serve it for development::

    python -m enrollment.dataexchange.simulator --csv FILE --port 8790 --app-id enrollment --secret S

The CSV file (UTF-8, header row, columns in any order, empty cells for what a row does not use) has one row per
fact; the ``dataset`` column says which fact and which columns it uses:

- ``person``: ``id_number``, ``name``; the real-name registry (实名核验).
- ``household``: ``id_number``, ``household_number``, ``address``, ``district_code``, ``registered_on``,
  ``relation`` (to the head of household), ``guardian_ids`` (the parents in the same household, may be empty).
- ``birth_certificate``: ``id_number`` (the child), ``certificate_number``, ``guardian_ids`` (mother and father).
- ``property``: ``certificate_number``, ``owner_ids``, ``address``, ``district_code``, ``registered_on``.
- ``residence_permit``: ``id_number``, ``certificate_number`` (the permit number), ``address``, ``district_code``,
  ``issued_on``, ``valid_until``.
- ``social_insurance``: ``id_number``, ``months``, ``since``, ``city``.

Lists (``guardian_ids``, ``owner_ids``) are separated by ``;``; dates are ISO (``2021-03-15``); ``note`` is free
text for people reading the file. Social insurance figures are a snapshot: the simulator answers ``months`` as
written, where the real platform counts up to the query date.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, TypeVar

from fastapi import Depends, FastAPI, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from kit.errors import Problem, ServiceUnavailable, install_problem_handlers
from kit.identifiers import IdNumberError, parse_resident_id

from .contract import (
    Answer,
    Dataset,
    GuardianshipCheck,
    HouseholdRecord,
    IdentityCheck,
    PropertyRecord,
    ResidencePermitRecord,
    SocialInsuranceRecord,
)
from .http import (
    GUARDIANSHIP_PATH,
    HOUSEHOLD_PATH,
    IDENTITY_PATH,
    PROPERTY_PATH,
    RESIDENCE_PERMIT_PATH,
    SOCIAL_INSURANCE_PATH,
)
from .signing import SignatureError, SignatureVerifier

__all__ = [
    "BirthCertificate",
    "RecordSet",
    "RecordsFileError",
    "SimulatedDataExchange",
    "SimulatorFaults",
    "create_simulator_app",
    "load_records",
]

RecordT = TypeVar("RecordT")


@dataclass(frozen=True, slots=True)
class BirthCertificate:
    """A birth certificate (出生医学证明) as the health commission's dataset holds it."""

    certificate_number: str
    parent_id_numbers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RecordSet:
    """Everything the simulated platform knows, indexed the way it is looked up."""

    names: Mapping[str, str] = field(default_factory=dict)
    households: Mapping[str, HouseholdRecord] = field(default_factory=dict)
    birth_certificates: Mapping[str, BirthCertificate] = field(default_factory=dict)
    properties: tuple[PropertyRecord, ...] = ()
    residence_permits: Mapping[str, ResidencePermitRecord] = field(default_factory=dict)
    social_insurance: Mapping[str, SocialInsuranceRecord] = field(default_factory=dict)


class RecordsFileError(ValueError):
    """A row of the records CSV is malformed; the message names the file and line."""


_DATASETS = {
    "person": ("id_number", "name"),
    "household": ("id_number", "household_number", "address", "district_code", "registered_on", "relation"),
    "birth_certificate": ("id_number", "certificate_number", "guardian_ids"),
    "property": ("certificate_number", "owner_ids", "address", "district_code", "registered_on"),
    "residence_permit": ("id_number", "certificate_number", "address", "district_code", "issued_on", "valid_until"),
    "social_insurance": ("id_number", "months", "since", "city"),
}


class _Row:
    """One CSV row with typed accessors that report the file and line on failure."""

    def __init__(self, where: str, cells: Mapping[str, str | None]) -> None:
        self.where = where
        self._cells = {name: (value or "").strip() for name, value in cells.items() if name}

    def fail(self, message: str) -> RecordsFileError:
        return RecordsFileError(f"{self.where}: {message}")

    def text(self, column: str) -> str:
        return self._cells.get(column, "")

    def id_number(self, column: str = "id_number") -> str:
        return self._id(self.text(column), column)

    def id_numbers(self, column: str) -> tuple[str, ...]:
        return tuple(self._id(part.strip(), column) for part in self.text(column).split(";") if part.strip())

    def day(self, column: str) -> date:
        try:
            return date.fromisoformat(self.text(column))
        except ValueError:
            raise self.fail(f"{column} must be an ISO date like 2021-03-15, not {self.text(column)!r}") from None

    def district_code(self) -> str:
        code = self.text("district_code")
        if len(code) != 6 or not code.isdigit():
            raise self.fail(f"district_code must be 6 digits, not {code!r}")
        return code

    def _id(self, value: str, column: str) -> str:
        try:
            return parse_resident_id(value).number
        except IdNumberError as error:
            raise self.fail(f"{column} {value!r}: {error.message_en}") from None


def load_records(csv_path: str | os.PathLike[str]) -> RecordSet:
    """Read a records CSV (format in the module docstring); raise :class:`RecordsFileError` on a bad row."""
    names: dict[str, str] = {}
    households: dict[str, HouseholdRecord] = {}
    births: dict[str, BirthCertificate] = {}
    properties: dict[str, PropertyRecord] = {}
    permits: dict[str, ResidencePermitRecord] = {}
    insurance: dict[str, SocialInsuranceRecord] = {}
    path = Path(csv_path)
    # utf-8-sig: spreadsheet programs save CSV with a byte-order mark.
    with path.open(encoding="utf-8-sig", newline="") as file:
        reader = csv.DictReader(file)
        for cells in reader:
            row = _Row(f"{path.name}:{reader.line_num}", cells)
            dataset = row.text("dataset")
            if dataset not in _DATASETS:
                raise row.fail(f"dataset must be one of {', '.join(_DATASETS)}, not {dataset!r}")
            missing = [column for column in _DATASETS[dataset] if not row.text(column)]
            if missing:
                raise row.fail(f"a {dataset} row needs {', '.join(missing)}")
            if dataset == "person":
                _add(row, names, row.id_number(), row.text("name"))
            elif dataset == "household":
                record = HouseholdRecord(
                    household_number=row.text("household_number"),
                    address=row.text("address"),
                    district_code=row.district_code(),
                    registered_on=row.day("registered_on"),
                    relation_to_head=row.text("relation"),
                    guardian_id_numbers=row.id_numbers("guardian_ids"),
                )
                _add(row, households, row.id_number(), record)
            elif dataset == "birth_certificate":
                certificate = BirthCertificate(row.text("certificate_number"), row.id_numbers("guardian_ids"))
                _add(row, births, row.id_number(), certificate)
            elif dataset == "property":
                property_record = PropertyRecord(
                    certificate_number=row.text("certificate_number"),
                    owner_id_numbers=row.id_numbers("owner_ids"),
                    address=row.text("address"),
                    district_code=row.district_code(),
                    registered_on=row.day("registered_on"),
                )
                _add(row, properties, property_record.certificate_number, property_record)
            elif dataset == "residence_permit":
                permit = ResidencePermitRecord(
                    permit_number=row.text("certificate_number"),
                    address=row.text("address"),
                    district_code=row.district_code(),
                    issued_on=row.day("issued_on"),
                    valid_until=row.day("valid_until"),
                )
                if permit.valid_until < permit.issued_on:
                    raise row.fail("valid_until is before issued_on")
                _add(row, permits, row.id_number(), permit)
            else:
                months = row.text("months")
                if not months.isdigit():
                    raise row.fail(f"months must be a whole number, not {months!r}")
                contributions = SocialInsuranceRecord(months=int(months), since=row.day("since"), city=row.text("city"))
                _add(row, insurance, row.id_number(), contributions)
    return RecordSet(
        names=names,
        households=households,
        birth_certificates=births,
        properties=tuple(properties.values()),
        residence_permits=permits,
        social_insurance=insurance,
    )


_Value = TypeVar("_Value")


def _add(row: _Row, index: dict[str, _Value], key: str, value: _Value) -> None:
    if key in index:
        raise row.fail(f"{row.text('dataset')} {key} appears twice")
    index[key] = value


class SimulatedDataExchange:
    """The platform's lookups answered in-process from a :class:`RecordSet`; ``clock`` gives unix seconds."""

    def __init__(self, records: RecordSet, *, clock: Callable[[], float] = time.time) -> None:
        self._records = records
        self._clock = clock

    def _answer(self, record: RecordT, source: str) -> Answer[RecordT]:
        return Answer(
            record=record,
            source=source,
            reference=f"SIM-{uuid.uuid4().hex[:20].upper()}",
            checked_at=datetime.fromtimestamp(self._clock(), UTC),
        )

    async def household(self, child_id_number: str) -> Answer[HouseholdRecord | None]:
        """The person's household registration in the city, or ``None``."""
        return self._answer(self._records.households.get(child_id_number), Dataset.HOUSEHOLD)

    async def properties(self, owner_id_numbers: Sequence[str]) -> Answer[tuple[PropertyRecord, ...]]:
        """Every residential property owned (also jointly) by any of these people, in file order."""
        if isinstance(owner_id_numbers, str):
            raise TypeError("owner_id_numbers must be a sequence of ID numbers, not one string")
        if not owner_id_numbers:
            raise ValueError("owner_id_numbers must name at least one person")
        wanted = set(owner_id_numbers)
        found = tuple(record for record in self._records.properties if wanted & set(record.owner_id_numbers))
        return self._answer(found, Dataset.PROPERTY)

    async def residence_permit(self, id_number: str) -> Answer[ResidencePermitRecord | None]:
        """The person's residence permit in the city, or ``None``."""
        return self._answer(self._records.residence_permits.get(id_number), Dataset.RESIDENCE_PERMIT)

    async def social_insurance(self, id_number: str) -> Answer[SocialInsuranceRecord | None]:
        """The person's unbroken run of social insurance contributions, or ``None``."""
        return self._answer(self._records.social_insurance.get(id_number), Dataset.SOCIAL_INSURANCE)

    async def verify_identity(self, id_number: str, name: str) -> Answer[IdentityCheck]:
        """Whether ``name`` is the registered name of ``id_number`` (surrounding spaces ignored)."""
        registered = self._records.names.get(id_number)
        return self._answer(
            IdentityCheck(matches=registered is not None and registered == name.strip()), Dataset.IDENTITY
        )

    async def verify_guardianship(self, child_id_number: str, guardian_id_number: str) -> Answer[GuardianshipCheck]:
        """Whether the adult is a parent by the child's household record, else by the birth certificate.

        A negative answer names both datasets as its source: both were consulted.
        """
        household = self._records.households.get(child_id_number)
        if household is not None and guardian_id_number in household.guardian_id_numbers:
            return self._answer(GuardianshipCheck(matches=True, basis="household"), Dataset.HOUSEHOLD)
        birth = self._records.birth_certificates.get(child_id_number)
        if birth is not None and guardian_id_number in birth.parent_id_numbers:
            return self._answer(GuardianshipCheck(matches=True, basis="birth_certificate"), Dataset.BIRTH_CERTIFICATE)
        return self._answer(GuardianshipCheck(matches=False), f"{Dataset.HOUSEHOLD}、{Dataset.BIRTH_CERTIFICATE}")

    async def aclose(self) -> None:
        """Nothing to release."""


# --- HTTP -------------------------------------------------------------------------------------------------------


def _resident_id(value: str) -> str:
    return parse_resident_id(value).number


ResidentIdNumber = Annotated[str, AfterValidator(_resident_id)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IdNumberQuery(_Body):
    id_number: ResidentIdNumber


class PropertyQuery(_Body):
    owner_id_numbers: list[ResidentIdNumber] = Field(min_length=1, max_length=20)


class IdentityQuery(_Body):
    id_number: ResidentIdNumber
    name: str = Field(min_length=1, max_length=50)


class GuardianshipQuery(_Body):
    child_id_number: ResidentIdNumber
    guardian_id_number: ResidentIdNumber


class SignatureRejected(Problem):
    """The request's signature headers are missing, stale, replayed or wrong."""

    status = 401
    slug = "signature-rejected"
    title_zh = "请求签名校验失败"
    title_en = "Request signature rejected"


@dataclass
class SimulatorFaults:
    """Faults the simulator injects; tests change them on ``app.state.faults`` between calls."""

    latency_seconds: float = 0.0
    fail_next: int = 0


def create_simulator_app(
    records: RecordSet,
    *,
    app_id: str,
    secret: str,
    latency_seconds: float = 0,
    fail_next: int = 0,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """A FastAPI app serving the platform's HTTP protocol from ``records`` for one signed-in app id.

    Every request first waits ``latency_seconds``, then the next ``fail_next`` requests get a 503, then the
    signature is verified (401 problem+json when wrong), then the body (422 when malformed).
    """
    exchange = SimulatedDataExchange(records, clock=clock)
    verifier = SignatureVerifier({app_id: secret}, clock=clock)
    faults = SimulatorFaults(latency_seconds=latency_seconds, fail_next=fail_next)

    async def admit(request: Request) -> None:
        if faults.latency_seconds > 0:
            await asyncio.sleep(faults.latency_seconds)
        if faults.fail_next > 0:
            faults.fail_next -= 1
            raise ServiceUnavailable(
                "模拟故障：平台暂时不可用；simulated fault: the platform is temporarily unavailable"
            )
        raw_path = request.scope.get("raw_path")
        path = raw_path.decode("ascii") if raw_path else request.url.path
        try:
            verifier.verify(request.method, path, request.url.query, request.headers, await request.body())
        except SignatureError as error:
            raise SignatureRejected(str(error), code=error.code) from None

    app = FastAPI(
        title="政务数据共享交换平台（模拟）",
        summary="Simulated city data-sharing platform for the enrollment service",
        dependencies=[Depends(admit)],
    )
    app.state.faults = faults
    install_problem_handlers(app)

    @app.post(HOUSEHOLD_PATH)
    async def household(query: IdNumberQuery) -> Answer[HouseholdRecord | None]:
        return await exchange.household(query.id_number)

    @app.post(PROPERTY_PATH)
    async def properties(query: PropertyQuery) -> Answer[tuple[PropertyRecord, ...]]:
        return await exchange.properties(query.owner_id_numbers)

    @app.post(RESIDENCE_PERMIT_PATH)
    async def residence_permit(query: IdNumberQuery) -> Answer[ResidencePermitRecord | None]:
        return await exchange.residence_permit(query.id_number)

    @app.post(SOCIAL_INSURANCE_PATH)
    async def social_insurance(query: IdNumberQuery) -> Answer[SocialInsuranceRecord | None]:
        return await exchange.social_insurance(query.id_number)

    @app.post(IDENTITY_PATH)
    async def verify_identity(query: IdentityQuery) -> Answer[IdentityCheck]:
        return await exchange.verify_identity(query.id_number, query.name)

    @app.post(GUARDIANSHIP_PATH)
    async def verify_guardianship(query: GuardianshipQuery) -> Answer[GuardianshipCheck]:
        return await exchange.verify_guardianship(query.child_id_number, query.guardian_id_number)

    return app


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the simulator with uvicorn (``--secret`` may come from ``DATAEXCHANGE_SECRET`` instead)."""
    import uvicorn

    parser = argparse.ArgumentParser(description="Serve the simulated city data-sharing platform.")
    parser.add_argument("--csv", required=True, type=Path, help="records file (see the module docstring)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--app-id", required=True, help="the app id callers sign with")
    parser.add_argument("--secret", default=os.environ.get("DATAEXCHANGE_SECRET"), help="the shared signing secret")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to wait before every answer")
    arguments = parser.parse_args(argv)
    if not arguments.secret:
        parser.error("--secret or DATAEXCHANGE_SECRET is required")
    app = create_simulator_app(
        load_records(arguments.csv),
        app_id=arguments.app_id,
        secret=arguments.secret,
        latency_seconds=arguments.latency,
    )
    uvicorn.run(app, host=arguments.host, port=arguments.port)


if __name__ == "__main__":
    main()

"""What the enrollment service asks the city data-sharing platform (政务数据共享交换平台), and what it gets back.

"入学一件事": instead of asking families for paper copies, the service looks up the child's household
registration (公安户籍), the family's property (不动产登记), a parent's residence permit (居住证) and social
insurance (社保缴费), checks that a name belongs to a resident ID number (实名核验) and that an adult is a guardian
of the child (household record or birth certificate 出生医学证明).

Every lookup returns an :class:`Answer`: the record (or ``None`` when the dataset has nothing), the dataset that
answered (``source``), the platform's reference for the call and when it was checked, so the service can store
each result "with its source and time". Records are frozen pydantic models; their JSON form is also the wire
format of the HTTP protocol (see :mod:`enrollment.dataexchange.http`).

All lookups are keyed by resident ID numbers that the caller has already validated
(:func:`kit.identifiers.parse_resident_id`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from enum import StrEnum
from typing import Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Answer",
    "DataExchange",
    "DataExchangeError",
    "DataExchangeRejected",
    "DataExchangeUnavailable",
    "Dataset",
    "GuardianshipCheck",
    "HouseholdRecord",
    "IdentityCheck",
    "PropertyRecord",
    "ResidencePermitRecord",
    "SocialInsuranceRecord",
]


class Dataset(StrEnum):
    """The government datasets behind each lookup, named as the platform's catalogue names them."""

    HOUSEHOLD = "公安户籍"
    PROPERTY = "不动产登记"
    RESIDENCE_PERMIT = "公安居住证"
    SOCIAL_INSURANCE = "人社社保缴费"
    IDENTITY = "公安人口库实名核验"
    BIRTH_CERTIFICATE = "卫健出生医学证明"


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class HouseholdRecord(_Record):
    """A person's household registration (户籍): the household they belong to and where it is registered."""

    household_number: str = Field(description="户号")
    address: str = Field(description="户籍地址")
    district_code: str = Field(description="6-digit administrative division code of the registration address")
    registered_on: date = Field(description="落户日期: when the person was registered at this address")
    relation_to_head: str = Field(description="与户主关系, e.g. 子, 女, 孙子")
    guardian_id_numbers: tuple[str, ...] = Field(
        default=(), description="ID numbers of the father/mother recorded in the same household"
    )


class PropertyRecord(_Record):
    """A registered residential property (不动产登记) owned wholly or partly by one of the queried people."""

    certificate_number: str = Field(description="不动产权证号")
    owner_id_numbers: tuple[str, ...] = Field(description="ID numbers of all registered owners")
    address: str
    district_code: str
    registered_on: date = Field(description="登簿日期: when the ownership was registered")


class ResidencePermitRecord(_Record):
    """A residence permit (居住证) held by a resident registered in another place."""

    permit_number: str
    address: str = Field(description="居住地址")
    district_code: str
    issued_on: date
    valid_until: date


class SocialInsuranceRecord(_Record):
    """Social insurance contributions (社保缴费) paid without a break up to the query date."""

    months: int = Field(ge=0, description="months contributed continuously up to the query date")
    since: date = Field(description="first month of the current unbroken run of contributions")
    city: str = Field(description="the city where contributions are paid, e.g. 杭州市")


class IdentityCheck(_Record):
    """Real-name check (实名核验): whether the name belongs to the resident ID number."""

    matches: bool


class GuardianshipCheck(_Record):
    """Whether an adult is the child's father or mother, and which record shows it."""

    matches: bool
    basis: Literal["household", "birth_certificate"] | None = Field(
        default=None, description="the record that proves it: the child's household record or birth certificate"
    )


RecordT = TypeVar("RecordT")


class Answer(BaseModel, Generic[RecordT]):
    """One answer of the platform with its provenance: which dataset, which call, and when."""

    model_config = ConfigDict(frozen=True)

    record: RecordT
    source: str = Field(description="the dataset that answered, normally a Dataset value")
    reference: str = Field(description="the platform's reference for this call, quoted when disputing a result")
    checked_at: datetime = Field(description="when the platform checked its dataset (timezone-aware)")


class DataExchangeError(Exception):
    """The data-sharing platform did not give an answer. ``str(error)`` is ``"中文；English"``; ``status`` is the
    HTTP status when there was one."""

    def __init__(
        self, message_zh: str, message_en: str, *, status: int | None = None, detail: str | None = None
    ) -> None:
        self.message_zh = message_zh
        self.message_en = message_en
        self.status = status
        # What the platform said about the failure (its problem+json ``detail``), for logs and support tickets.
        self.detail = detail
        super().__init__(f"{message_zh}；{message_en}")


class DataExchangeUnavailable(DataExchangeError):
    """The platform could not be reached or failed (timeout, connection, 5xx): keep the application, retry later."""


class DataExchangeRejected(DataExchangeError):
    """The platform refused the request (bad signature, bad request): retrying the same call will not help."""


class DataExchange(Protocol):
    """The lookups the enrollment service makes on the city data-sharing platform.

    Implemented by :class:`enrollment.dataexchange.http.HttpDataExchange` (the real platform or the simulator
    over HTTP) and :class:`enrollment.dataexchange.simulator.SimulatedDataExchange` (in-process). Every method
    raises :class:`DataExchangeUnavailable` or :class:`DataExchangeRejected` when there is no answer.
    """

    async def household(self, child_id_number: str) -> Answer[HouseholdRecord | None]:
        """The person's household registration in the city, or ``None`` when not registered here."""
        ...

    async def properties(self, owner_id_numbers: Sequence[str]) -> Answer[tuple[PropertyRecord, ...]]:
        """Every residential property owned (also jointly) by any of these people; each property once."""
        ...

    async def residence_permit(self, id_number: str) -> Answer[ResidencePermitRecord | None]:
        """The person's current residence permit in the city, or ``None``; expiry is the caller's to judge."""
        ...

    async def social_insurance(self, id_number: str) -> Answer[SocialInsuranceRecord | None]:
        """The person's unbroken run of social insurance contributions, or ``None`` when not paying."""
        ...

    async def verify_identity(self, id_number: str, name: str) -> Answer[IdentityCheck]:
        """Whether ``name`` is the registered name of ``id_number``."""
        ...

    async def verify_guardianship(self, child_id_number: str, guardian_id_number: str) -> Answer[GuardianshipCheck]:
        """Whether the adult is the child's father or mother by the household record or the birth certificate."""
        ...

    async def aclose(self) -> None:
        """Release connections; the object is unusable afterwards."""
        ...

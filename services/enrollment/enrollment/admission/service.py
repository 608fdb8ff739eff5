"""Admission: seasons, applications and their history, priorities from verified facts, pressure and progress.

Functions only flush; the caller's unit of work commits. Resident ID numbers are stored encrypted, found by keyed
hash and shown masked; every read of an application is an access to a minor's personal information and is audited.
"""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

from sqlmodel import Session, col, func, select

import kit.audit as audit_log
from contracts.events import enrollment as events
from enrollment.admission.errors import (
    ApplicationClosed,
    ApplicationNotFound,
    DuplicateApplication,
    InvalidApplication,
    InvalidSeason,
    NotTheGuardian,
    SeasonNotFound,
)
from enrollment.admission.models import (
    AdmissionSeason,
    Application,
    ApplicationRevision,
    AttendanceZone,
    SeasonSchool,
    SupportingDocument,
    Verification,
)
from enrollment.admission.schemas import (
    ApplicationCreate,
    ApplicationRead,
    ApplicationUpdate,
    DocumentRead,
    PressureRead,
    PriorityCategory,
    ProgressRead,
    RevisionRead,
    SchoolPressure,
    SeasonCreate,
    SeasonRead,
    SeasonSchoolRead,
    VerificationRead,
    ZonePressure,
    ZoneRead,
)
from enrollment.deps import Caller
from enrollment.directory.models import DirectoryGuardianLink, DirectoryOrganisation, DirectoryPerson
from kit.crypto import FieldCipher
from kit.db import after_commit
from kit.errors import FieldError, Forbidden
from kit.identifiers import IdentifierError, mask_resident_id, parse_resident_id
from kit.outbox import emit, utcnow

VERIFICATION_KINDS = ("identity", "guardianship", "household", "property", "residence_permit", "social_insurance")
#: Facts that depend on who applies, checked again when the applicant's ID number changes.
APPLICANT_FACTS = ("identity", "guardianship", "property", "residence_permit", "social_insurance")
RESIDENT_ID = "resident_id"
HOUSEHOLD_NUMBER = "household_number"
ADULT_AGE = 18

_STATUS_MESSAGES = {
    "verifying": "正在通过市政务数据共享平台核验信息，请稍后查看；"
    "Verification pending: the city's data-sharing platform is being asked, check back later.",
    "verified": "信息核验完成，等待统一派位；Verified: waiting for the placement.",
    "needs_documents": "部分信息无法自动核验，请上传证明材料；Some facts could not be verified automatically: upload a "
    "document for them.",
    "rejected": "申请未通过核验，请根据提示修改；The application failed verification: correct it as described.",
    "withdrawn": "申请已撤回；The application was withdrawn.",
    "placed": "已派位，请确认是否接受；A place was offered: accept or decline it.",
    "unplaced": "本轮未派位，已进入候补；Not placed in this round: the child is on the waiting lists.",
}
_VERIFICATION_MESSAGES = {
    "pending": "核验中；pending",
    "verified": "已自动核验，无需提交材料；verified automatically, no document needed",
    "not_found": "未查到记录，如有证明材料可上传；no record found: upload a document if you have one",
    "mismatch": "信息不一致，请检查填写的身份证号；the details do not match: check the ID number",
    "document": "已凭证明材料审核通过；accepted from a reviewed document",
}


# ------------------------------------------------------------------------------------------------ addresses


def normalise_address(text: str) -> str:
    """Compare addresses as typed in different ways: full-width forms folded, whitespace and punctuation gone."""
    folded = unicodedata.normalize("NFKC", text)
    return "".join(ch for ch in folded if not ch.isspace() and ch not in "，,。.、-—()（）")


@dataclass(frozen=True)
class Zone:
    id: str
    name: str
    school_ids: tuple[str, ...]
    prefixes: tuple[str, ...]


def load_zones(session: Session, season_id: str) -> list[Zone]:
    rows = session.exec(select(AttendanceZone).where(AttendanceZone.season_id == season_id)).all()
    return [
        Zone(
            row.id, row.name, tuple(json.loads(row.school_ids)),
            tuple(normalise_address(prefix) for prefix in json.loads(row.address_prefixes)),
        )
        for row in rows
    ]  # fmt: skip


def zone_of(zones: list[Zone], address: str | None) -> Zone | None:
    """The zone whose most specific address prefix the address starts with."""
    if not address:
        return None
    normalised = normalise_address(address)
    best: tuple[int, Zone] | None = None
    for zone in zones:
        for prefix in zone.prefixes:
            if normalised.startswith(prefix) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), zone)
    return best[1] if best else None


# -------------------------------------------------------------------------------------------------- seasons


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def get_season(session: Session, season_id: str) -> AdmissionSeason:
    season = session.get(AdmissionSeason, season_id)
    if season is None:
        raise SeasonNotFound(
            f"没有编号为 {season_id[:64]} 的招生季；No admission season has the id {season_id[:64]!r}."
        )
    return season


def accepting(season: AdmissionSeason, now: datetime | None = None) -> bool:
    now = now or utcnow()
    return season.status == "open" and _aware(season.opens_at) <= now < _aware(season.closes_at)


def create_season(session: Session, caller: Caller, body: SeasonCreate) -> AdmissionSeason:
    """A district's admission season with its schools, seats and zones, as a draft."""
    district = session.get(DirectoryOrganisation, body.district_id)
    if district is None or district.kind != "district":
        raise InvalidSeason(
            "district_id 不是一个区县；district_id does not name a district.",
            errors=[FieldError(field="district_id", message="unknown district", code="unknown_district")],
        )
    caller.require(roles=("city_admin", "district_admin"), org_path=district.path, scope="enrollment.write")
    errors: list[FieldError] = []
    schools: list[tuple[SeasonSchoolIn, DirectoryOrganisation]] = []
    for index, entry in enumerate(body.schools):
        school = session.get(DirectoryOrganisation, entry.school_id)
        if school is None or school.kind != "school" or not school.path.startswith(district.path + "/"):
            errors.append(
                FieldError(
                    field=f"schools[{index}].school_id",
                    message=f"{entry.school_id} 不是本区的学校；is not a school of this district",
                    code="school_outside_district",
                )
            )
            continue
        schools.append((entry, school))
    if errors:
        raise InvalidSeason("有学校不属于该区；Some schools are not in the district.", errors=errors)
    season = AdmissionSeason(
        district_id=district.id, district_path=district.path, title=body.title, grade=body.grade,
        school_year=body.school_year, opens_at=body.opens_at, closes_at=body.closes_at, birth_from=body.birth_from,
        birth_to=body.birth_to, max_choices=body.max_choices,
        categories=json.dumps([category.model_dump() for category in body.categories], ensure_ascii=False),
        created_by=caller.person_id,
    )  # fmt: skip
    session.add(season)
    session.flush()
    for entry, school in schools:
        session.add(
            SeasonSchool(
                season_id=season.id, school_id=school.id, name=school.name, seats=entry.seats,
                open_to_all_zones=entry.open_to_all_zones,
            )
        )  # fmt: skip
    for zone in body.zones:
        session.add(
            AttendanceZone(
                season_id=season.id, name=zone.name, school_ids=json.dumps(zone.school_ids),
                address_prefixes=json.dumps(zone.address_prefixes, ensure_ascii=False),
            )
        )  # fmt: skip
    session.flush()
    _audit(session, caller, "admission.season_created", "season", season.id, district.id)
    return season


# Imported late for the annotation above only.
from enrollment.admission.schemas import SeasonSchoolIn  # noqa: E402


def open_season(session: Session, caller: Caller, season_id: str) -> AdmissionSeason:
    """Open a draft season to applications (announced by event)."""
    season = get_season(session, season_id)
    caller.require(roles=("city_admin", "district_admin"), org_path=season.district_path, scope="enrollment.write")
    if season.status != "draft":
        raise ApplicationClosed(f"招生季已是 {season.status} 状态；The season is already {season.status}.")
    season.status = "open"
    season.updated_at = utcnow()
    session.add(season)
    school_ids = [row.school_id for row in _season_schools(session, season.id)]
    emit(
        session,
        events.AdmissionSeasonOpenedV1(
            season_id=season.id, district_id=season.district_id, title=season.title, grade=season.grade,
            school_year=season.school_year, opens_at=_aware(season.opens_at), closes_at=_aware(season.closes_at),
            school_ids=school_ids,
        ),
        subject_id=season.id, org_id=season.district_id,
    )  # fmt: skip
    _audit(session, caller, "admission.season_opened", "season", season.id, season.district_id)
    return season


def _season_schools(session: Session, season_id: str) -> list[SeasonSchool]:
    return list(
        session.exec(select(SeasonSchool).where(SeasonSchool.season_id == season_id).order_by(col(SeasonSchool.name)))
    )


def list_seasons(session: Session, district_id: str | None) -> list[AdmissionSeason]:
    statement = select(AdmissionSeason).where(AdmissionSeason.status != "draft")
    if district_id:
        statement = statement.where(AdmissionSeason.district_id == district_id)
    return list(session.exec(statement.order_by(col(AdmissionSeason.opens_at).desc())))


def season_read(session: Session, season: AdmissionSeason) -> SeasonRead:
    return SeasonRead(
        id=season.id, district_id=season.district_id, title=season.title, grade=season.grade,
        school_year=season.school_year, opens_at=season.opens_at, closes_at=season.closes_at,
        birth_from=season.birth_from, birth_to=season.birth_to, max_choices=season.max_choices,
        categories=categories_of(season), status=season.status, accepting_applications=accepting(season),
        schools=[
            SeasonSchoolRead(
                school_id=row.school_id, name=row.name, seats=row.seats, open_to_all_zones=row.open_to_all_zones
            )
            for row in _season_schools(session, season.id)
        ],
        zones=[
            ZoneRead(id=row.id, name=row.name, school_ids=json.loads(row.school_ids),
                     address_prefixes=json.loads(row.address_prefixes))
            for row in session.exec(select(AttendanceZone).where(AttendanceZone.season_id == season.id))
        ],
        seed_commitment=season.seed_commitment, input_digest=season.input_digest,
    )  # fmt: skip


def categories_of(season: AdmissionSeason) -> list[PriorityCategory]:
    return [PriorityCategory.model_validate(item) for item in json.loads(season.categories)]


# ----------------------------------------------------------------------------------------------- applications


def _audit(
    session: Session,
    caller: Caller | None,
    action: str,
    target_type: str,
    target_id: str,
    org_id: str | None,
    detail: dict[str, Any] | None = None,
) -> None:
    audit_log.append(
        session, action=action, actor_id=caller.person_id if caller else None,
        actor_client=caller.principal.client_id if caller else None, source_ip=caller.source_ip if caller else None,
        request_id=caller.request_id if caller else None, target_type=target_type, target_id=target_id,
        org_id=org_id, detail=detail,
    )  # fmt: skip


def _resident_id(value: str, field: str, today: date) -> tuple[str, date, str]:
    """(normalised number, birth date, sex) or a 422 naming the field."""
    try:
        parsed = parse_resident_id(value, today=today)
    except IdentifierError as error:
        raise InvalidApplication(
            error.message, errors=[FieldError(field=field, message=error.message, code=error.code)]
        ) from None
    return parsed.number, parsed.birth_date, parsed.sex


def _age_on(birth: date, day: date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def _check_choices(
    session: Session, season: AdmissionSeason, zones: list[Zone], address: str, choices: list[str]
) -> Zone | None:
    """The zone of the address; every choice must be a school of that zone or one open to every zone."""
    if len(choices) > season.max_choices:
        raise InvalidApplication(
            f"最多可填报 {season.max_choices} 个志愿；At most {season.max_choices} schools may be chosen.",
            errors=[FieldError(field="choices", message=f"at most {season.max_choices}", code="too_many_choices")],
        )
    offered = {row.school_id: row for row in _season_schools(session, season.id)}
    zone = zone_of(zones, address)
    errors: list[FieldError] = []
    for index, school_id in enumerate(choices):
        school = offered.get(school_id)
        if school is None:
            errors.append(
                FieldError(field=f"choices[{index}]", message="本招生季没有这所学校；not a school of this season",
                           code="unknown_school")
            )  # fmt: skip
        elif not school.open_to_all_zones and (zone is None or school_id not in zone.school_ids):
            where = f"“{zone.name}”" if zone else "任何学区"
            errors.append(
                FieldError(
                    field=f"choices[{index}]",
                    message=f"{school.name} 不招收您住址所属{where}的学生；{school.name} does not take children "
                    "from your address's attendance zone",
                    code="school_outside_zone",
                )
            )
    if errors:
        raise InvalidApplication(
            "志愿学校不符合学区划片规则；Some chosen schools are outside your zone's rules.", errors=errors
        )
    return zone


def _check_guardian_link(session: Session, caller: Caller, child_number: str) -> None:
    """A child already in the directory may only be applied for by a linked guardian."""
    student = session.exec(select(DirectoryPerson).where(DirectoryPerson.student_number == "G" + child_number)).first()
    if student is None:
        return  # not in any school yet: guardianship is checked against the household and birth records
    links = session.exec(select(DirectoryGuardianLink).where(DirectoryGuardianLink.student_id == student.id)).all()
    if links and caller.person_id not in {link.guardian_id for link in links}:
        raise NotTheGuardian(
            "您与该儿童没有监护关系记录，不能为其申请；You are not recorded as this child's guardian, so you cannot "
            "apply for the child."
        )


def submit_application(
    session: Session, caller: Caller, cipher: FieldCipher, season_id: str, body: ApplicationCreate
) -> Application:
    """A parent's application for a child; facts are then verified in the background."""
    season = get_season(session, season_id)
    now = utcnow()
    if not accepting(season, now):
        raise ApplicationClosed(
            f"本招生季报名时间为 {_local(season.opens_at)} 至 {_local(season.closes_at)}，当前不接受申请；"
            f"Applications are accepted from {season.opens_at.isoformat()} to {season.closes_at.isoformat()} only."
        )
    today = now.date()
    child_number, birth, sex = _resident_id(body.child_id_number, "child_id_number", today)
    applicant_number, applicant_birth, _ = _resident_id(body.applicant_id_number, "applicant_id_number", today)
    if not season.birth_from <= birth <= season.birth_to:
        raise InvalidApplication(
            f"儿童出生日期 {birth.isoformat()} 不在本次招生的入学年龄范围（{season.birth_from} 至 {season.birth_to}）；"
            "the child's birth date is outside this season's admission age.",
            errors=[FieldError(field="child_id_number", message="birth date outside the admission age",
                               code="outside_admission_age")],
        )  # fmt: skip
    if applicant_number == child_number or _age_on(applicant_birth, today) < ADULT_AGE:
        raise InvalidApplication(
            "申请人须为儿童的成年监护人，请填写您本人的身份证号；The applicant must be the child's adult guardian: "
            "enter your own ID number.",
            errors=[FieldError(field="applicant_id_number", message="not an adult's ID number", code="not_adult")],
        )
    _check_guardian_link(session, caller, child_number)
    child_hash = cipher.lookup_hash(RESIDENT_ID, child_number)
    existing = session.exec(
        select(Application).where(Application.season_id == season.id, Application.child_id_hash == child_hash)
    ).first()
    if existing is not None:
        raise DuplicateApplication(
            "该儿童在本招生季已有申请，请修改原申请而不是重复提交；This child already has an application this season: "
            "change that one instead.",
            application_id=existing.id if existing.applicant_person_id == caller.person_id else None,
        )
    zone = _check_choices(session, season, load_zones(session, season.id), body.address, body.choices)
    application = Application(
        season_id=season.id, applicant_person_id=caller.person_id, applicant_relationship=body.relationship,
        applicant_id_cipher=cipher.encrypt(RESIDENT_ID, applicant_number),
        applicant_id_masked=mask_resident_id(applicant_number), child_name=body.child_name, child_id_hash=child_hash,
        child_id_cipher=cipher.encrypt(RESIDENT_ID, child_number), child_id_masked=mask_resident_id(child_number),
        child_sex=sex, child_birth_date=birth,
        household_number_cipher=cipher.encrypt(HOUSEHOLD_NUMBER, body.household_number),
        address=body.address, zone_id=zone.id if zone else None, choices=json.dumps(body.choices), status="verifying",
    )  # fmt: skip
    session.add(application)
    session.flush()
    for kind in VERIFICATION_KINDS:
        session.add(Verification(application_id=application.id, kind=kind, next_attempt_at=now))
    _revision(session, application, "submitted", {"choices": [None, body.choices]}, caller.person_id)
    _audit(session, caller, "admission.application_submitted", "application", application.id, season.district_id)
    _wake_verifier(session)
    return application


def _local(moment: datetime) -> str:
    return _aware(moment).strftime("%Y-%m-%d %H:%M %Z")


def _wake_verifier(session: Session) -> None:
    waker = session.info.get("verifier_wake")
    if waker is not None:
        after_commit(session, waker)


def _revision(
    session: Session, application: Application, action: str, changes: dict[str, Any], actor_id: str | None
) -> None:
    session.add(
        ApplicationRevision(
            application_id=application.id, version=application.version, action=action,
            changes=json.dumps(changes, ensure_ascii=False, default=str), actor_id=actor_id,
        )
    )  # fmt: skip


def get_application(session: Session, application_id: str) -> Application:
    application = session.get(Application, application_id)
    if application is None:
        raise ApplicationNotFound(
            f"没有编号为 {application_id[:64]} 的申请；No application has the id {application_id[:64]!r}."
        )
    return application


def application_for_family(session: Session, caller: Caller, application_id: str) -> Application:
    """The caller's own application; another family's is reported as not found (no probing)."""
    caller.require_scope("admission.apply")
    application = get_application(session, application_id)
    if application.applicant_person_id != caller.person_id:
        raise ApplicationNotFound(
            f"没有编号为 {application_id[:64]} 的申请；No application has the id {application_id[:64]!r}."
        )
    return application


def application_for_admin(session: Session, caller: Caller, application_id: str) -> Application:
    """An application a district (or city) administrator of its season may see."""
    application = get_application(session, application_id)
    season = get_season(session, application.season_id)
    caller.require(roles=("city_admin", "district_admin"), org_path=season.district_path, scope="enrollment.read")
    return application


def update_application(
    session: Session, caller: Caller, cipher: FieldCipher, application_id: str, body: ApplicationUpdate
) -> Application:
    """A family's change before the deadline; each change is kept, and changed facts are verified again."""
    application = application_for_family(session, caller, application_id)
    season = get_season(session, application.season_id)
    if not accepting(season):
        raise ApplicationClosed(
            f"报名已于 {_local(season.closes_at)} 截止，申请不能再修改；"
            "The deadline has passed; the application can no longer be changed."
        )
    if application.status == "withdrawn":
        raise ApplicationClosed("申请已撤回；The application was withdrawn.")
    changes: dict[str, Any] = {}
    recheck: set[str] = set()
    address = body.address if body.address is not None else application.address
    choices = body.choices if body.choices is not None else json.loads(application.choices)
    if body.address is not None and body.address != application.address:
        changes["address"] = [application.address, body.address]
    if body.choices is not None and body.choices != json.loads(application.choices):
        changes["choices"] = [json.loads(application.choices), body.choices]
    zone = _check_choices(session, season, load_zones(session, season.id), address, choices)
    if (
        body.household_number is not None
        and cipher.decrypt(HOUSEHOLD_NUMBER, application.household_number_cipher) != body.household_number
    ):
        application.household_number_cipher = cipher.encrypt(HOUSEHOLD_NUMBER, body.household_number)
        changes["household_number"] = ["***", "***"]
        recheck.add("household")
    if body.applicant_id_number is not None:
        number, birth, _ = _resident_id(body.applicant_id_number, "applicant_id_number", utcnow().date())
        if _age_on(birth, utcnow().date()) < ADULT_AGE:
            raise InvalidApplication(
                "申请人须为成年监护人；The applicant must be an adult guardian.",
                errors=[FieldError(field="applicant_id_number", message="not an adult's ID number", code="not_adult")],
            )
        if cipher.decrypt(RESIDENT_ID, application.applicant_id_cipher) != number:
            changes["applicant_id_number"] = [application.applicant_id_masked, mask_resident_id(number)]
            application.applicant_id_cipher = cipher.encrypt(RESIDENT_ID, number)
            application.applicant_id_masked = mask_resident_id(number)
            recheck.update(APPLICANT_FACTS)
    if not changes:
        return application
    application.address = address
    application.choices = json.dumps(choices)
    application.zone_id = zone.id if zone else None
    application.version += 1
    application.updated_at = utcnow()
    if recheck:
        for verification in session.exec(
            select(Verification).where(
                Verification.application_id == application.id, col(Verification.kind).in_(sorted(recheck))
            )
        ):
            verification.status = "pending"
            verification.attempts = 0
            verification.next_attempt_at = utcnow()
            verification.last_error = None
            session.add(verification)
        _wake_verifier(session)
    session.add(application)
    session.flush()
    reassess(session, application, season)
    _revision(session, application, "edited", changes, caller.person_id)
    _audit(session, caller, "admission.application_edited", "application", application.id, season.district_id,
           {"fields": sorted(changes)})  # fmt: skip
    return application


def withdraw_application(session: Session, caller: Caller, application_id: str) -> Application:
    application = application_for_family(session, caller, application_id)
    season = get_season(session, application.season_id)
    if season.status not in ("draft", "open"):
        raise ApplicationClosed(
            "派位已开始，不能撤回申请；如不接受录取结果，请选择放弃学位；The draw has begun: decline the offered place "
            "instead of withdrawing."
        )
    if application.status != "withdrawn":
        previous = application.status
        application.status = "withdrawn"
        application.version += 1
        application.updated_at = utcnow()
        session.add(application)
        _revision(session, application, "withdrawn", {"status": [previous, "withdrawn"]}, caller.person_id)
        _audit(session, caller, "admission.application_withdrawn", "application", application.id, season.district_id)
    return application


def list_family_applications(session: Session, caller: Caller) -> list[Application]:
    caller.require_scope("admission.apply")
    return list(
        session.exec(
            select(Application)
            .where(Application.applicant_person_id == caller.person_id)
            .order_by(col(Application.submitted_at).desc())
        )
    )


def list_season_applications(
    session: Session,
    caller: Caller,
    season_id: str,
    *,
    status: str | None,
    school_id: str | None,
    limit: int,
    offset: int,
) -> tuple[list[Application], int]:
    """Applications of a season for its district's administrators; school admins see the pupils placed with them."""
    season = get_season(session, season_id)
    statement = select(Application).where(Application.season_id == season.id)
    if caller.principal.can_act(("city_admin", "district_admin"), org_path=season.district_path):
        caller.require(roles=("city_admin", "district_admin"), org_path=season.district_path, scope="enrollment.read")
        if school_id:
            statement = statement.where(Application.placed_school_id == school_id)
    else:
        if not school_id:
            raise Forbidden("学校管理员请指定本校 school_id；A school administrator must name their school_id.")
        school = session.get(DirectoryOrganisation, school_id)
        if school is None:
            raise Forbidden("无权查看；Not allowed.")
        caller.require(roles=("school_admin",), org_path=school.path, scope="enrollment.read")
        statement = statement.where(Application.placed_school_id == school_id)
    if status:
        statement = statement.where(Application.status == status)
    total = session.exec(select(func.count()).select_from(statement.subquery())).one()
    rows = session.exec(
        statement.order_by(col(Application.submitted_at), col(Application.id)).limit(limit).offset(offset)
    )
    items = list(rows)
    _audit(session, caller, "admission.applications_listed", "season", season.id, season.district_id,
           {"count": len(items), "school_id": school_id})  # fmt: skip
    return items, int(total)


def application_read(session: Session, application: Application, *, zones: list[Zone] | None = None) -> ApplicationRead:
    verifications = session.exec(
        select(Verification).where(Verification.application_id == application.id).order_by(col(Verification.kind))
    ).all()
    documents = session.exec(
        select(SupportingDocument)
        .where(SupportingDocument.application_id == application.id)
        .order_by(col(SupportingDocument.uploaded_at))
    ).all()
    zone_name = None
    if application.zone_id:
        zone = session.get(AttendanceZone, application.zone_id)
        zone_name = zone.name if zone else None
    return ApplicationRead(
        id=application.id, season_id=application.season_id, child_name=application.child_name,
        child_id_number=application.child_id_masked, child_sex=application.child_sex,
        applicant_id_number=application.applicant_id_masked, relationship=application.applicant_relationship,
        address=application.address, zone=zone_name, choices=json.loads(application.choices),
        status=application.status,
        status_message=application.status_reason or _STATUS_MESSAGES.get(application.status, application.status),
        category=application.category, lottery_number=application.lottery_number,
        placed_school_id=application.placed_school_id, offer=application.offer, round=application.round,
        version=application.version, submitted_at=application.submitted_at, updated_at=application.updated_at,
        verifications=[
            VerificationRead(
                kind=row.kind, status=row.status, source=row.source, checked_at=row.checked_at, attempts=row.attempts,
                message=_VERIFICATION_MESSAGES.get(row.status, row.status),
            )
            for row in verifications
        ],
        documents=[
            DocumentRead(id=row.id, kind=row.kind, filename=row.filename, size=row.size, status=row.status,
                         review_note=row.review_note, uploaded_at=row.uploaded_at)
            for row in documents
        ],
    )  # fmt: skip


def revisions(session: Session, application: Application) -> list[RevisionRead]:
    rows = session.exec(
        select(ApplicationRevision)
        .where(ApplicationRevision.application_id == application.id)
        .order_by(col(ApplicationRevision.id))
    ).all()
    return [
        RevisionRead(version=row.version, action=row.action, changes=json.loads(row.changes), actor_id=row.actor_id,
                     at=row.at)
        for row in rows
    ]  # fmt: skip


def note_read(
    session: Session, caller: Caller, application: Application, action: str = "admission.application_read"
) -> None:
    """Every read of a child's application is an access to a minor's personal information: audited."""
    season = get_season(session, application.season_id)
    _audit(session, caller, action, "application", application.id, season.district_id)


# ------------------------------------------------------------------------------------------------ priorities


def _facts(verification: Verification | None) -> dict[str, Any]:
    if verification is None or verification.status not in ("verified", "document"):
        return {}
    facts: dict[str, Any] = json.loads(verification.facts)
    return facts


def _date_key(value: str | None) -> int:
    """YYYYMMDD as an integer: earlier dates compare lower (stronger)."""
    if not value:
        return 99_991_231
    return int(value.replace("-", "")[:8])


def compute_priorities(
    season: AdmissionSeason,
    zones: list[Zone],
    schools: dict[str, SeasonSchool],
    choices: list[str],
    verifications: dict[str, Verification],
) -> tuple[dict[str, list[int]], str | None]:
    """Per chosen school the child's priority (category rank, tie-break date), and the best category's code.

    A child holds, at a school, the first category whose requirements all hold for that school's zone; a school
    open to every zone ranks children holding no category there after every category.
    """
    categories = categories_of(season)
    household = _facts(verifications.get("household"))
    properties = _facts(verifications.get("property")).get("properties", [])
    permit = _facts(verifications.get("residence_permit"))
    insurance = _facts(verifications.get("social_insurance"))

    def zone_ids(address: str | None) -> set[str]:
        zone = zone_of(zones, address)
        return {zone.id} if zone else set()

    household_zones = zone_ids(household.get("address"))
    property_zones: dict[str, str] = {}  # zone id -> earliest registration date there
    for item in properties:
        for zone_id in zone_ids(item.get("address")):
            property_zones[zone_id] = min(property_zones.get(zone_id, "9999-12-31"), item.get("registered_on", ""))
    permit_valid = bool(permit) and permit.get("valid_until", "") >= season.opens_at.date().isoformat()
    permit_zones = zone_ids(permit.get("address")) if permit_valid else set()
    priorities: dict[str, list[int]] = {}
    best: tuple[int, str] | None = None
    for school_id in choices:
        school = schools.get(school_id)
        if school is None:
            continue
        school_zones = {zone.id for zone in zones if school_id in zone.school_ids}
        for rank, category in enumerate(categories, start=1):
            held = True
            for requirement in category.requires:
                if requirement == "household_in_zone":
                    held = held and bool(household_zones & school_zones)
                elif requirement == "property_in_zone":
                    held = held and bool(set(property_zones) & school_zones)
                elif requirement == "residence_permit_in_zone":
                    held = held and bool(permit_zones & school_zones)
                elif requirement == "social_insurance":
                    held = (
                        held
                        and bool(insurance.get("in_city", False))
                        and int(insurance.get("months", 0)) >= category.social_insurance_months
                    )
            if held:
                tie = 0
                if category.tie_break == "household_registered_on":
                    tie = _date_key(household.get("registered_on"))
                elif category.tie_break == "property_registered_on":
                    tie = _date_key(min((property_zones[z] for z in set(property_zones) & school_zones), default=None))
                elif category.tie_break == "social_insurance_since":
                    tie = _date_key(insurance.get("since"))
                priorities[school_id] = [rank, tie]
                if best is None or rank < best[0]:
                    best = (rank, category.code)
                break
        else:
            if school.open_to_all_zones:
                priorities[school_id] = [len(categories) + 1, 0]
                if best is None:
                    best = (len(categories) + 1, "out_of_zone")
    return priorities, best[1] if best else None


def reassess(session: Session, application: Application, season: AdmissionSeason) -> None:
    """Set the application's status and priorities from its verifications (after any of them changed)."""
    if application.status in ("withdrawn", "placed", "unplaced"):
        return
    verifications = {
        row.kind: row for row in session.exec(select(Verification).where(Verification.application_id == application.id))
    }
    previous = application.status
    reason: str | None = None
    if any(row.status == "pending" for row in verifications.values()):
        status = "verifying"
    elif verifications.get("identity") is not None and verifications["identity"].status == "mismatch":
        status = "rejected"
        reason = (
            "申请人身份证号与实名信息不一致，请核对后修改申请；The applicant's ID number does not match the registered "
            "name: check it and change the application."
        )
    elif verifications.get("guardianship") is None or verifications["guardianship"].status not in (
        "verified",
        "document",
    ):
        status = "needs_documents"
        reason = (
            "未能核实您与儿童的监护关系，请上传出生医学证明或监护证明；Your guardianship of the child could not be "
            "verified: upload the birth certificate or a guardianship document."
        )
    else:
        status = "verified"
    schools = {row.school_id: row for row in _season_schools(session, season.id)}
    priorities, category = compute_priorities(
        season, load_zones(session, season.id), schools, json.loads(application.choices), verifications
    )
    application.priorities = json.dumps(priorities, sort_keys=True)
    application.category = category
    if status == "verified" and not priorities:
        reason = (
            "已核验的信息不满足所填志愿学校的入学条件，如信息有误请上传证明材料；The verified facts give the child no "
            "place in the chosen schools' rules: upload a document if a fact is wrong."
        )
    application.status = status
    application.status_reason = reason
    application.updated_at = utcnow()
    session.add(application)
    if status != previous:
        _revision(session, application, status, {"status": [previous, status]}, None)


# ---------------------------------------------------------------------------------------- pressure, progress


def _level(ratio: float) -> Literal["green", "yellow", "red"]:
    return "green" if ratio < 0.8 else "yellow" if ratio <= 1.0 else "red"


def _admin_season(session: Session, caller: Caller, season_id: str) -> AdmissionSeason:
    season = get_season(session, season_id)
    caller.require(roles=("city_admin", "district_admin"), org_path=season.district_path, scope="enrollment.read")
    return season


def pressure(session: Session, caller: Caller, season_id: str) -> PressureRead:
    """Applicants against seats per school and zone before the draw (学位预警)."""
    season = _admin_season(session, caller, season_id)
    active = session.exec(
        select(Application.choices, Application.zone_id).where(
            Application.season_id == season.id, col(Application.status).not_in(("withdrawn", "rejected"))
        )
    ).all()
    first: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    by_zone: Counter[str] = Counter()
    for choices_json, zone_id in active:
        choices = json.loads(choices_json)
        if choices:
            first[choices[0]] += 1
        anywhere.update(choices)
        if zone_id:
            by_zone[zone_id] += 1
    schools = _season_schools(session, season.id)
    seats = {row.school_id: row.seats for row in schools}
    school_rows = []
    for row in schools:
        ratio = first[row.school_id] / row.seats if row.seats else float(first[row.school_id] > 0) * 99.0
        school_rows.append(
            SchoolPressure(
                school_id=row.school_id, name=row.name, seats=row.seats, first_choice=first[row.school_id],
                any_choice=anywhere[row.school_id], ratio=round(ratio, 3), level=_level(ratio),
            )
        )  # fmt: skip
    zone_rows = []
    for zone in load_zones(session, season.id):
        zone_seats = sum(seats.get(school_id, 0) for school_id in zone.school_ids)
        ratio = by_zone[zone.id] / zone_seats if zone_seats else float(by_zone[zone.id] > 0) * 99.0
        zone_rows.append(
            ZonePressure(zone_id=zone.id, name=zone.name, seats=zone_seats, applicants=by_zone[zone.id],
                         ratio=round(ratio, 3), level=_level(ratio))
        )  # fmt: skip
    school_rows.sort(key=lambda item: -item.ratio)
    zone_rows.sort(key=lambda item: -item.ratio)
    return PressureRead(season_id=season.id, schools=school_rows, zones=zone_rows)


def progress(session: Session, caller: Caller, season_id: str) -> ProgressRead:
    """How far the season is: applications by status, verification work left, and paper the families were spared."""
    season = _admin_season(session, caller, season_id)
    by_status = dict(
        session.exec(
            select(Application.status, func.count())
            .where(Application.season_id == season.id)
            .group_by(col(Application.status))
        ).all()
    )
    families = sum(count for status, count in by_status.items() if status != "withdrawn")
    verification_counts = dict(
        session.exec(
            select(Verification.status, func.count())
            .join(Application, col(Application.id) == col(Verification.application_id))
            .where(Application.season_id == season.id, Application.status != "withdrawn")
            .group_by(col(Verification.status))
        ).all()
    )
    uploaded = session.exec(
        select(func.count())
        .select_from(SupportingDocument)
        .join(Application, col(Application.id) == col(SupportingDocument.application_id))
        .where(Application.season_id == season.id)
    ).one()
    avoided = int(verification_counts.get("verified", 0))
    return ProgressRead(
        season_id=season.id, applications=families, by_status={key: int(value) for key, value in by_status.items()},
        verifications_pending=int(verification_counts.get("pending", 0)), verified_facts=avoided,
        documents_avoided=avoided, documents_uploaded=int(uploaded),
        documents_avoided_per_family=round(avoided / families, 2) if families else 0.0,
    )  # fmt: skip

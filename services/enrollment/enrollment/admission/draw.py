"""The draw: committing the seed and the input, placing, publishing, and moving the waiting lists after declines.

1. ``commit``: after the deadline, the verified applications are frozen into the anonymised placement input; a
   fresh seed is drawn and kept encrypted; SHA-256 of both is published (event and public page).
2. ``draw``: a witness (the notary supervising the draw) contributes entropy nobody knew at the commitment, so the
   operator cannot have tried seeds until one suited them; the lottery seed is HMAC-SHA256(committed seed,
   witness entropy). The input is checked against its digest, placed (deferred acceptance, one lottery number per
   child), the results stored, and the committed seed revealed with the entropy.
3. ``decline``: a family gives up its place; the placement is re-run with the same input and seed minus every child
   who declined, so nobody else is worse off and the waiting lists move (a new round is published).
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
from collections.abc import Iterator

from sqlmodel import Session, col, select

from contracts.events import enrollment as events
from enrollment.admission import placement
from enrollment.admission.errors import DrawStateConflict
from enrollment.admission.models import AdmissionSeason, Application, PlacementRound, SeasonSchool
from enrollment.admission.schemas import DrawRead, RoundRead
from enrollment.admission.service import (
    _audit,
    _aware,
    _revision,
    application_for_family,
    get_season,
)
from enrollment.deps import Caller
from enrollment.directory.models import DirectoryOrganisation
from kit.crypto import FieldCipher
from kit.outbox import emit, utcnow

SEED_FIELD = "lottery_seed"


def lottery_seed(committed_seed: bytes, witness_entropy: str) -> bytes:
    """The seed the lottery numbers come from: neither the committed seed nor the witness alone decides it."""
    return hmac.new(committed_seed, witness_entropy.encode(), hashlib.sha256).digest()


PLACEMENT_STATUSES = ("placed", "unplaced")


def _district_admin(session: Session, caller: Caller, season_id: str) -> AdmissionSeason:
    season = get_season(session, season_id)
    caller.require(roles=("city_admin", "district_admin"), org_path=season.district_path, scope="enrollment.write")
    return season


def _input(
    session: Session, season: AdmissionSeason, statuses: tuple[str, ...]
) -> tuple[list[placement.Applicant], dict[str, int]]:
    capacities = {
        row.school_id: row.seats
        for row in session.exec(select(SeasonSchool).where(SeasonSchool.season_id == season.id))
    }
    applicants = []
    for application in session.exec(
        select(Application).where(Application.season_id == season.id, col(Application.status).in_(statuses))
    ):
        priorities = json.loads(application.priorities or "{}")
        applicants.append(
            placement.Applicant(
                id=application.id,
                choices=tuple(json.loads(application.choices)),
                priorities={school: tuple(value) for school, value in priorities.items()},
            )
        )
    return applicants, capacities


def commit(
    session: Session, caller: Caller, cipher: FieldCipher, season_id: str, *, include_unsettled: bool
) -> AdmissionSeason:
    """Freeze the input and commit to a secret seed, both by published SHA-256 digests."""
    season = _district_admin(session, caller, season_id)
    if season.status != "open":
        raise DrawStateConflict(f"招生季处于 {season.status} 状态，不能提交派位；The season is {season.status}.")
    if utcnow() < _aware(season.closes_at):
        raise DrawStateConflict(
            f"报名将于 {season.closes_at.isoformat()} 截止，截止后才能锁定派位数据；Applications close at "
            f"{season.closes_at.isoformat()}: the draw can be prepared only after that."
        )
    unsettled = session.exec(
        select(Application.status).where(
            Application.season_id == season.id, col(Application.status).in_(("verifying", "needs_documents"))
        )
    ).all()
    if unsettled and not include_unsettled:
        counts = {status: unsettled.count(status) for status in set(unsettled)}
        raise DrawStateConflict(
            f"仍有 {len(unsettled)} 份申请未完成核验（{counts}）；请处理后再锁定，或明确选择不纳入这些申请；"
            f"{len(unsettled)} applications are not settled yet ({counts}): settle them, or commit with "
            "include_unsettled=true to leave them out.",
            unsettled=counts,
        )
    applicants, capacities = _input(session, season, ("verified",))
    seed = placement.new_seed()
    season.draw_input = placement.canonical_input(applicants, capacities).decode()
    season.input_digest = placement.input_digest(applicants, capacities)
    season.seed_commitment = placement.commitment(seed)
    season.seed_cipher = cipher.encrypt(SEED_FIELD, seed.hex())
    season.status = "committed"
    season.committed_at = utcnow()
    season.updated_at = season.committed_at
    session.add(season)
    emit(
        session,
        events.AdmissionDrawCommittedV1(
            season_id=season.id, district_id=season.district_id, seed_commitment=season.seed_commitment,
            input_digest=season.input_digest, applicants=len(applicants), committed_at=season.committed_at,
        ),
        subject_id=season.id, org_id=season.district_id,
    )  # fmt: skip
    _audit(session, caller, "admission.draw_committed", "season", season.id, season.district_id,
           {"applicants": len(applicants), "input_digest": season.input_digest})  # fmt: skip
    return season


def draw(
    session: Session, caller: Caller, cipher: FieldCipher, season_id: str, *, witness_entropy: str
) -> AdmissionSeason:
    """Place every committed applicant with the witness's entropy, publish round 1 and reveal the seed."""
    season = _district_admin(session, caller, season_id)
    if season.status != "committed" or season.seed_cipher is None or season.draw_input is None:
        raise DrawStateConflict(
            "请先锁定派位数据并公布种子哈希，再进行派位；Commit the input and the seed before the draw."
        )
    applicants, capacities = placement.parse_input(json.loads(season.draw_input))
    if placement.input_digest(applicants, capacities) != season.input_digest:
        raise DrawStateConflict("派位数据与公布的摘要不一致；The stored input does not match its published digest.")
    committed_seed = bytes.fromhex(cipher.decrypt(SEED_FIELD, season.seed_cipher))
    seed = lottery_seed(committed_seed, witness_entropy)
    result = placement.place(applicants, capacities, seed)
    _apply(session, season, result, round_number=1, moved_from=None, actor_id=caller.person_id)
    session.add(PlacementRound(
        season_id=season.id, round=1, assignment_digest=placement.assignment_digest(result),
        placed=sum(1 for school in result.assignment.values() if school),
        unplaced=sum(1 for school in result.assignment.values() if not school),
    ))  # fmt: skip
    season.seed = committed_seed.hex()
    season.witness_entropy = witness_entropy
    season.status = "drawn"
    season.drawn_at = utcnow()
    season.updated_at = season.drawn_at
    session.add(season)
    _publish(session, season, 1, result)
    _audit(session, caller, "admission.draw", "season", season.id, season.district_id,
           {"assignment_digest": placement.assignment_digest(result)})  # fmt: skip
    return season


def _apply(
    session: Session,
    season: AdmissionSeason,
    result: placement.PlacementResult,
    *,
    round_number: int,
    moved_from: dict[str, str | None] | None,
    actor_id: str | None,
) -> int:
    """Store a placement on the applications; returns how many changed school since the previous round."""
    moved = 0
    for application in session.exec(
        select(Application).where(Application.season_id == season.id, col(Application.id).in_(list(result.assignment)))
    ):
        school = result.assignment[application.id]
        if moved_from is not None and moved_from.get(application.id) == school:
            continue
        previous = application.placed_school_id
        application.placed_school_id = school
        application.status = "placed" if school else "unplaced"
        application.offer = "offered" if school else None
        application.lottery_number = str(result.lottery[application.id])
        application.round = round_number
        application.version += 1
        application.updated_at = utcnow()
        session.add(application)
        _revision(session, application, "placed" if school else "unplaced",
                  {"placed_school_id": [previous, school], "round": round_number}, actor_id)  # fmt: skip
        if moved_from is not None:
            moved += 1
    return moved


def _publish(session: Session, season: AdmissionSeason, round_number: int, result: placement.PlacementResult) -> None:
    emit(
        session,
        events.AdmissionPlacementPublishedV1(
            season_id=season.id, district_id=season.district_id, round=round_number, seed=season.seed or "",
            witness_entropy=season.witness_entropy or "",
            assignment_digest=placement.assignment_digest(result),
            placed=sum(1 for school in result.assignment.values() if school),
            unplaced=sum(1 for school in result.assignment.values() if not school), published_at=utcnow(),
        ),
        subject_id=season.id, org_id=season.district_id,
    )  # fmt: skip


def accept(session: Session, caller: Caller, application_id: str) -> Application:
    """The family accepts the offered place."""
    application = application_for_family(session, caller, application_id)
    if application.offer not in ("offered", "accepted") or application.placed_school_id is None:
        raise DrawStateConflict("当前没有可接受的学位；There is no offered place to accept.")
    if application.offer == "accepted":
        return application
    season = get_season(session, application.season_id)
    application.offer = "accepted"
    application.version += 1
    application.updated_at = utcnow()
    session.add(application)
    _revision(session, application, "accepted", {"offer": ["offered", "accepted"]}, caller.person_id)
    emit(
        session,
        events.AdmissionOfferAcceptedV1(
            application_id=application.id, season_id=season.id, school_id=application.placed_school_id,
            grade=season.grade,
        ),
        subject_id=application.id, org_id=application.placed_school_id,
    )  # fmt: skip
    _audit(session, caller, "admission.offer_accepted", "application", application.id, season.district_id)
    return application


def decline(session: Session, caller: Caller, cipher: FieldCipher, application_id: str) -> Application:
    """The family gives up the offered place; the placement is re-run without everyone who declined."""
    application = application_for_family(session, caller, application_id)
    season = get_season(session, application.season_id)
    if season.status != "drawn" or application.offer not in ("offered", "accepted"):
        raise DrawStateConflict("当前没有可放弃的学位；There is no place to decline.")
    previous_school = application.placed_school_id
    application.offer = "declined"
    application.version += 1
    application.updated_at = utcnow()
    session.add(application)
    _revision(session, application, "declined", {"placed_school_id": [previous_school, None]}, caller.person_id)
    session.flush()
    declined = sorted(
        session.exec(
            select(Application.id).where(Application.season_id == season.id, Application.offer == "declined")
        ).all()
    )
    assert season.draw_input is not None and season.seed is not None and season.witness_entropy is not None
    applicants, capacities = placement.parse_input(json.loads(season.draw_input))
    remaining = [applicant for applicant in applicants if applicant.id not in set(declined)]
    result = placement.place(remaining, capacities, lottery_seed(bytes.fromhex(season.seed), season.witness_entropy))
    before = dict(
        session.exec(
            select(Application.id, Application.placed_school_id).where(
                Application.season_id == season.id, col(Application.id).in_([item.id for item in remaining])
            )
        ).all()
    )
    last = session.exec(
        select(PlacementRound.round)
        .where(PlacementRound.season_id == season.id)
        .order_by(col(PlacementRound.round).desc())
    ).first()
    round_number = (last or 1) + 1
    moved = _apply(session, season, result, round_number=round_number, moved_from=before, actor_id=None)
    session.add(PlacementRound(
        season_id=season.id, round=round_number, declined=json.dumps(declined),
        assignment_digest=placement.assignment_digest(result),
        placed=sum(1 for school in result.assignment.values() if school),
        unplaced=sum(1 for school in result.assignment.values() if not school), moved=moved,
    ))  # fmt: skip
    _publish(session, season, round_number, result)
    _audit(session, caller, "admission.offer_declined", "application", application.id, season.district_id,
           {"round": round_number, "moved": moved})  # fmt: skip
    return application


def draw_read(session: Session, season: AdmissionSeason) -> DrawRead:
    rounds = session.exec(
        select(PlacementRound).where(PlacementRound.season_id == season.id).order_by(col(PlacementRound.round))
    ).all()
    return DrawRead(
        season_id=season.id, status=season.status, seed_commitment=season.seed_commitment,
        input_digest=season.input_digest, committed_at=season.committed_at, seed=season.seed,
        witness_entropy=season.witness_entropy,
        lottery_seed=lottery_seed(bytes.fromhex(season.seed), season.witness_entropy or "").hex()
        if season.seed and season.witness_entropy is not None else None,
        drawn_at=season.drawn_at,
        rounds=[
            RoundRead(round=row.round, assignment_digest=row.assignment_digest, placed=row.placed,
                      unplaced=row.unplaced, moved=row.moved, declined=json.loads(row.declined),
                      published_at=row.published_at)
            for row in rounds
        ],
        verify_command="python -m enrollment.admission.placement verify draw-input.json <lottery_seed>",
    )  # fmt: skip


def results_csv(session: Session, caller: Caller, season_id: str, school_id: str | None) -> Iterator[str]:
    """The season's results as CSV (UTF-8 with BOM for spreadsheet programs); ID numbers masked; audited."""
    season = get_season(session, season_id)
    if school_id is None or caller.principal.can_act(("city_admin", "district_admin"), org_path=season.district_path):
        caller.require(roles=("city_admin", "district_admin"), org_path=season.district_path, scope="enrollment.read")
    else:
        school = session.get(DirectoryOrganisation, school_id)
        caller.require(roles=("school_admin",), org_path=school.path if school else "/-", scope="enrollment.read")
    if season.status != "drawn":
        raise DrawStateConflict("派位结果尚未产生；There are no results before the draw.")
    schools = {
        row.school_id: row.name for row in session.exec(select(SeasonSchool).where(SeasonSchool.season_id == season.id))
    }
    statement = select(Application).where(
        Application.season_id == season.id, col(Application.status).in_(PLACEMENT_STATUSES)
    )
    if school_id:
        statement = statement.where(Application.placed_school_id == school_id)
    rows = list(session.exec(statement.order_by(col(Application.placed_school_id), col(Application.child_name))))
    _audit(session, caller, "admission.results_exported", "season", season.id, season.district_id,
           {"rows": len(rows), "school_id": school_id})  # fmt: skip
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        ["申请编号", "儿童姓名", "身份证号", "性别", "录取学校", "优先类别", "随机号", "结果", "学位确认", "轮次"]
    )
    for row in rows:
        writer.writerow([
            row.id, row.child_name, row.child_id_masked, "男" if row.child_sex == "male" else "女",
            schools.get(row.placed_school_id or "", ""), row.category or "", row.lottery_number or "",
            "已派位" if row.status == "placed" else "未派位（候补）",
            {"offered": "待确认", "accepted": "已接受", "declined": "已放弃"}.get(row.offer or "", ""), row.round or "",
        ])  # fmt: skip
    yield "\ufeff" + buffer.getvalue()

"""Documents a family uploads only for facts the platform could not verify, and the district's review of them."""

from __future__ import annotations

import hashlib
import json

from sqlmodel import Session, select

from enrollment.admission.errors import ApplicationClosed, DocumentNotFound, DrawStateConflict, InvalidApplication
from enrollment.admission.models import SupportingDocument, Verification
from enrollment.admission.schemas import DocumentReview
from enrollment.admission.service import (
    _audit,
    _revision,
    application_for_admin,
    application_for_family,
    get_season,
    reassess,
)
from enrollment.deps import Caller
from kit.errors import FieldError, PayloadTooLarge, UnsupportedMediaType
from kit.outbox import utcnow

ACCEPTED_TYPES = {"application/pdf": b"%PDF", "image/jpeg": b"\xff\xd8\xff", "image/png": b"\x89PNG"}
DOCUMENT_KINDS = ("guardianship", "household", "property", "residence_permit", "social_insurance")
#: What a reviewer may record an accepted document as showing, per kind.
REVIEW_FACTS = {
    "guardianship": (),
    "household": ("address", "registered_on"),
    "property": ("address", "registered_on"),
    "residence_permit": ("address", "valid_until"),
    "social_insurance": ("months", "since"),
}


def upload(
    session: Session,
    caller: Caller,
    application_id: str,
    *,
    kind: str,
    filename: str,
    content_type: str,
    content: bytes,
    max_bytes: int,
) -> SupportingDocument:
    """Attach a document for a fact that could not be verified (never for one that was)."""
    application = application_for_family(session, caller, application_id)
    season = get_season(session, application.season_id)
    if season.status not in ("draft", "open"):
        raise ApplicationClosed(
            "派位数据已锁定，不能再上传材料；The draw input is frozen: documents can no longer be added."
        )
    if kind not in DOCUMENT_KINDS:
        raise InvalidApplication(
            f"材料类别应为 {', '.join(DOCUMENT_KINDS)} 之一；kind must be one of {', '.join(DOCUMENT_KINDS)}.",
            errors=[FieldError(field="kind", message="unknown document kind", code="unknown_kind")],
        )
    verification = session.exec(
        select(Verification).where(Verification.application_id == application.id, Verification.kind == kind)
    ).one()
    if verification.status in ("verified", "document"):
        raise InvalidApplication(
            "该项信息已核验通过，无需上传材料；This fact is already verified: no document is needed.",
            errors=[FieldError(field="kind", message="already verified", code="already_verified")],
        )
    if verification.status == "pending":
        raise InvalidApplication(
            "该项信息正在核验中，请等待结果后再决定是否上传；This fact is still being verified: wait for the result.",
            errors=[FieldError(field="kind", message="verification pending", code="verification_pending")],
        )
    if len(content) > max_bytes:
        raise PayloadTooLarge(
            f"文件不能超过 {max_bytes // 1024 // 1024} MB；The file may be at most {max_bytes} bytes."
        )
    magic = ACCEPTED_TYPES.get(content_type)
    if magic is None or not content.startswith(magic):
        raise UnsupportedMediaType("请上传 PDF、JPEG 或 PNG 文件；Upload a PDF, JPEG or PNG file.")
    document = SupportingDocument(
        application_id=application.id, kind=kind, filename=filename[:200] or "document", content_type=content_type,
        size=len(content), sha256=hashlib.sha256(content).hexdigest(), content=content,
    )  # fmt: skip
    session.add(document)
    _revision(session, application, "document_uploaded", {"kind": [None, kind]}, caller.person_id)
    _audit(session, caller, "admission.document_uploaded", "application", application.id, season.district_id,
           {"kind": kind, "size": len(content)})  # fmt: skip
    session.flush()
    return document


def review(session: Session, caller: Caller, document_id: str, body: DocumentReview) -> SupportingDocument:
    """A district reviewer accepts (with the facts it shows) or rejects a document; the application is reassessed."""
    document = session.get(SupportingDocument, document_id)
    if document is None:
        raise DocumentNotFound(f"没有编号为 {document_id[:64]} 的材料；No document has the id {document_id[:64]!r}.")
    application = application_for_admin(session, caller, document.application_id)
    season = get_season(session, application.season_id)
    caller.require(roles=("city_admin", "district_admin"), org_path=season.district_path, scope="enrollment.write")
    if season.status not in ("draft", "open"):
        raise DrawStateConflict(
            "派位数据已锁定，不能再审核材料；The draw input is frozen: documents can no longer be reviewed."
        )
    if document.status != "submitted":
        raise DrawStateConflict(f"该材料已审核（{document.status}）；The document was already reviewed.")
    allowed = REVIEW_FACTS[document.kind]
    unknown = sorted(set(body.facts) - set(allowed))
    if unknown:
        raise InvalidApplication(
            f"该类材料只能记录 {', '.join(allowed) or '无'}；This kind of document records only: {', '.join(allowed)}.",
            errors=[FieldError(field=f"facts.{name}", message="not recorded for this kind", code="unknown_fact")
                    for name in unknown],
        )  # fmt: skip
    document.status = "accepted" if body.decision == "accept" else "rejected"
    document.review_note = body.note
    document.reviewed_by = caller.person_id
    document.reviewed_at = utcnow()
    session.add(document)
    if body.decision == "accept":
        verification = session.exec(
            select(Verification).where(
                Verification.application_id == application.id, Verification.kind == document.kind
            )
        ).one()
        facts: dict[str, object] = dict(body.facts)
        if document.kind == "property":
            facts = {"properties": [dict(body.facts)]}
        if document.kind == "social_insurance":
            facts = {**body.facts, "months": int(body.facts.get("months", "0") or 0), "in_city": True}
        verification.status = "document"
        verification.source = "证明材料审核"
        verification.reference = document.id
        verification.checked_at = utcnow()
        verification.facts = json.dumps(facts, ensure_ascii=False)
        session.add(verification)
        session.flush()
        reassess(session, application, season)
    _revision(session, application, f"document_{document.status}", {"kind": [None, document.kind]}, caller.person_id)
    _audit(session, caller, "admission.document_reviewed", "application", application.id, season.district_id,
           {"kind": document.kind, "decision": body.decision})  # fmt: skip
    return document

"""HTTP routes of admission (入学一件事): seasons for districts, applications for families, the public draw."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request, UploadFile, status
from fastapi.responses import Response, StreamingResponse

from enrollment.admission import documents, draw
from enrollment.admission import service as admission
from enrollment.admission.errors import DrawStateConflict
from enrollment.admission.schemas import (
    ApplicationCreate,
    ApplicationRead,
    ApplicationUpdate,
    CommitRequest,
    DocumentRead,
    DocumentReview,
    DrawRead,
    DrawRequest,
    PressureRead,
    ProgressRead,
    RevisionRead,
    SeasonCreate,
    SeasonRead,
)
from enrollment.admission.verification import wake_on_commit
from enrollment.deps import CallerDep, CipherDep, SettingsDep
from kit.db import ReadSessionDep, SessionDep
from kit.errors import InsufficientScope
from kit.pagination import Page

router = APIRouter(prefix="/admission", tags=["admission"])


def _document_read(document: object) -> DocumentRead:
    return DocumentRead.model_validate(document, from_attributes=True)


# ------------------------------------------------------------------------------------------ districts


@router.post("/seasons", status_code=status.HTTP_201_CREATED)
def create_season(body: SeasonCreate, caller: CallerDep, session: SessionDep) -> SeasonRead:
    """Create a district's admission season (draft): dates, admission age, priority categories, schools, zones."""
    season = admission.create_season(session, caller, body)
    return admission.season_read(session, season)


@router.post("/seasons/{season_id}/open")
def open_season(season_id: str, caller: CallerDep, session: SessionDep) -> SeasonRead:
    """Open a draft season to applications."""
    return admission.season_read(session, admission.open_season(session, caller, season_id))


@router.get("/seasons")
def list_seasons(
    caller: CallerDep, session: ReadSessionDep, district_id: Annotated[str | None, Query(max_length=36)] = None
) -> list[SeasonRead]:
    """Seasons families can see (every season past its draft), newest first."""
    _require_any(caller, "admission.apply", "enrollment.read")
    return [admission.season_read(session, season) for season in admission.list_seasons(session, district_id)]


@router.get("/seasons/{season_id}")
def get_season(season_id: str, caller: CallerDep, session: ReadSessionDep) -> SeasonRead:
    """One season with its schools, seats, zones and rules."""
    _require_any(caller, "admission.apply", "enrollment.read")
    return admission.season_read(session, admission.get_season(session, season_id))


@router.get("/seasons/{season_id}/pressure")
def season_pressure(season_id: str, caller: CallerDep, session: ReadSessionDep) -> PressureRead:
    """Seat pressure warnings (学位预警) per school and zone, before the draw."""
    return admission.pressure(session, caller, season_id)


@router.get("/seasons/{season_id}/progress")
def season_progress(season_id: str, caller: CallerDep, session: ReadSessionDep) -> ProgressRead:
    """Applications by status, verification work left, and documents families did not have to bring."""
    return admission.progress(session, caller, season_id)


@router.get("/seasons/{season_id}/applications")
def season_applications(
    season_id: str,
    caller: CallerDep,
    session: SessionDep,
    status_filter: Annotated[str | None, Query(alias="status", max_length=24)] = None,
    school_id: Annotated[str | None, Query(max_length=36)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Page[ApplicationRead]:
    """A season's applications (district administrators), or the pupils placed at a school (its administrators)."""
    items, total = admission.list_season_applications(
        session, caller, season_id, status=status_filter, school_id=school_id, limit=limit, offset=offset
    )
    return Page(items=[admission.application_read(session, item) for item in items], total=total, limit=limit,
                offset=offset)  # fmt: skip


@router.post("/seasons/{season_id}/draw/commit")
def commit_draw(
    season_id: str, caller: CallerDep, session: SessionDep, cipher: CipherDep, body: CommitRequest | None = None
) -> DrawRead:
    """Freeze the verified applications and publish the SHA-256 of the input and of a secret lottery seed."""
    season = draw.commit(
        session, caller, cipher, season_id, include_unsettled=body.include_unsettled if body else False
    )
    return draw.draw_read(session, season)


@router.post("/seasons/{season_id}/draw")
def run_draw(season_id: str, body: DrawRequest, caller: CallerDep, session: SessionDep, cipher: CipherDep) -> DrawRead:
    """Place every committed applicant (deferred acceptance, one lottery number each) and reveal the seed."""
    return draw.draw_read(session, draw.draw(session, caller, cipher, season_id, witness_entropy=body.witness_entropy))


@router.get("/seasons/{season_id}/results.csv", response_class=StreamingResponse)
def export_results(
    season_id: str, caller: CallerDep, session: SessionDep,
    school_id: Annotated[str | None, Query(max_length=36)] = None,
) -> StreamingResponse:  # fmt: skip
    """The season's results as CSV (ID numbers masked), for the district or for one school."""
    body = "".join(draw.results_csv(session, caller, season_id, school_id))
    return StreamingResponse(
        iter([body.encode()]),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="admission-{season_id}.csv"'},
    )


@router.post("/documents/{document_id}/review")
def review_document(document_id: str, body: DocumentReview, caller: CallerDep, session: SessionDep) -> DocumentRead:
    """Accept (recording what it shows) or reject a family's document."""
    return _document_read(documents.review(session, caller, document_id, body))


@router.get("/documents/{document_id}/content")
def document_content(document_id: str, caller: CallerDep, session: SessionDep) -> Response:
    """The uploaded file, for the reviewing district (audited)."""
    from enrollment.admission.errors import DocumentNotFound
    from enrollment.admission.models import SupportingDocument

    document = session.get(SupportingDocument, document_id)
    if document is None:
        raise DocumentNotFound(f"没有编号为 {document_id[:64]} 的材料；No document has the id {document_id[:64]!r}.")
    application = admission.application_for_admin(session, caller, document.application_id)
    admission.note_read(session, caller, application, "admission.document_read")
    return Response(
        document.content, media_type=document.content_type,
        headers={"Content-Disposition": "attachment", "Cache-Control": "no-store"},
    )  # fmt: skip


# ------------------------------------------------------------------------------------------- the public draw


@router.get("/seasons/{season_id}/draw")
def draw_status(season_id: str, session: ReadSessionDep) -> DrawRead:
    """Public: the seed's commitment before the draw, the seed after it, and each round's assignment digest."""
    return draw.draw_read(session, admission.get_season(session, season_id))


@router.get("/seasons/{season_id}/draw/input")
def draw_input(season_id: str, session: ReadSessionDep) -> Response:
    """Public: the anonymised placement input exactly as committed (its SHA-256 is the published input digest)."""
    season = admission.get_season(session, season_id)
    if season.draw_input is None:
        raise DrawStateConflict("派位数据尚未锁定；The input has not been committed yet.")
    return Response(season.draw_input, media_type="application/json")


# ------------------------------------------------------------------------------------------------ families


@router.post("/seasons/{season_id}/applications", status_code=status.HTTP_201_CREATED)
def submit_application(
    season_id: str, body: ApplicationCreate, caller: CallerDep, session: SessionDep, cipher: CipherDep,
    request: Request,
) -> ApplicationRead:  # fmt: skip
    """Apply for a child; household, property, residence and insurance facts are then verified without paper."""
    caller.require_scope("admission.apply")
    wake_on_commit(session, request.app.state.verifier)
    application = admission.submit_application(session, caller, cipher, season_id, body)
    return admission.application_read(session, application)


@router.get("/applications")
def my_applications(caller: CallerDep, session: SessionDep) -> list[ApplicationRead]:
    """The caller's own applications."""
    items = admission.list_family_applications(session, caller)
    for item in items:
        admission.note_read(session, caller, item)
    return [admission.application_read(session, item) for item in items]


@router.get("/applications/{application_id}")
def get_application(application_id: str, caller: CallerDep, session: SessionDep) -> ApplicationRead:
    """One application with its verifications and documents: the family's own, or for the district's admins."""
    if caller.principal.has_scope("admission.apply"):
        application = admission.application_for_family(session, caller, application_id)
    else:
        application = admission.application_for_admin(session, caller, application_id)
    admission.note_read(session, caller, application)
    return admission.application_read(session, application)


@router.get("/applications/{application_id}/history")
def application_history(application_id: str, caller: CallerDep, session: SessionDep) -> list[RevisionRead]:
    """Every change to the application, oldest first."""
    if caller.principal.has_scope("admission.apply"):
        application = admission.application_for_family(session, caller, application_id)
    else:
        application = admission.application_for_admin(session, caller, application_id)
    admission.note_read(session, caller, application)
    return admission.revisions(session, application)


@router.patch("/applications/{application_id}")
def update_application(
    application_id: str, body: ApplicationUpdate, caller: CallerDep, session: SessionDep, cipher: CipherDep,
    request: Request,
) -> ApplicationRead:  # fmt: skip
    """Change address, household number, the applicant's ID number or the choices before the deadline."""
    wake_on_commit(session, request.app.state.verifier)
    application = admission.update_application(session, caller, cipher, application_id, body)
    return admission.application_read(session, application)


@router.delete("/applications/{application_id}")
def withdraw_application(application_id: str, caller: CallerDep, session: SessionDep) -> ApplicationRead:
    """Withdraw the application (before the draw)."""
    application = admission.withdraw_application(session, caller, application_id)
    return admission.application_read(session, application)


@router.post("/applications/{application_id}/documents", status_code=status.HTTP_201_CREATED)
async def upload_document(
    application_id: str, caller: CallerDep, settings: SettingsDep, request: Request,
    kind: Annotated[str, Form(max_length=24)], file: UploadFile,
) -> DocumentRead:  # fmt: skip
    """Upload a PDF, JPEG or PNG for a fact the platform could not verify."""
    content = await file.read(settings.document_max_bytes + 1)
    database = request.app.state.database

    def store() -> DocumentRead:
        with database.session() as session:
            document = documents.upload(
                session, caller, application_id, kind=kind, filename=file.filename or "document",
                content_type=file.content_type or "", content=content, max_bytes=settings.document_max_bytes,
            )  # fmt: skip
            return _document_read(document)

    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(store)


@router.post("/applications/{application_id}/accept")
def accept_offer(application_id: str, caller: CallerDep, session: SessionDep) -> ApplicationRead:
    """Accept the offered place."""
    return admission.application_read(session, draw.accept(session, caller, application_id))


@router.post("/applications/{application_id}/decline")
def decline_offer(application_id: str, caller: CallerDep, session: SessionDep, cipher: CipherDep) -> ApplicationRead:
    """Decline the offered place; the waiting lists move for everyone else."""
    return admission.application_read(session, draw.decline(session, caller, cipher, application_id))


def _require_any(caller: CallerDep, *scopes: str) -> None:
    if not any(caller.principal.has_scope(scope) for scope in scopes):
        raise InsufficientScope(
            f"This operation needs one of the OAuth scopes {', '.join(scopes)}.", required_scope=scopes[0]
        )

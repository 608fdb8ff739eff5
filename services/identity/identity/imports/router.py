"""Bulk import API: upload a CSV/XLSX file, then poll the job."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, Response, UploadFile, status
from sqlmodel import col, select

from identity import access
from identity.audit import service as audit
from identity.deps import ActorDep, SettingsDep
from identity.errors import ImportJobNotFound
from identity.imports import service
from identity.imports.models import ImportJob
from identity.imports.schemas import ImportJobRead, ImportKind, ImportMode
from identity.organisations import service as organisations
from identity.roles import ADMIN_ROLES, SCOPE_PEOPLE_WRITE
from kit.db import ReadSessionDep, SessionDep, after_commit
from kit.errors import FieldError, InvalidInput, PayloadTooLarge
from kit.pagination import Page, PageDep, fetch_page

router = APIRouter(prefix="/imports", tags=["imports"])


def _read(job: ImportJob, runner: service.ImportRunner) -> ImportJobRead:
    payload = {
        **{name: getattr(job, name) for name in ImportJobRead.model_fields if name not in ("errors", "phase")},
        "errors": json.loads(job.errors),
    }
    if job.status == "running" and (progress := runner.progress(job.id)) is not None:
        payload["phase"], payload["processed_rows"] = progress
    return ImportJobRead.model_validate(payload)


@router.post("", response_model=ImportJobRead, status_code=status.HTTP_202_ACCEPTED)
def start_import(
    request: Request,
    response: Response,
    session: SessionDep,
    actor: ActorDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="CSV (UTF-8 or GBK) or XLSX; first row is the header")],
    kind: Annotated[ImportKind, Form()],
    school_id: Annotated[str, Form()],
    mode: Annotated[ImportMode, Form()] = "all_or_nothing",
) -> ImportJobRead:
    """Upload students, teachers or guardians of one school; the rows are imported in the background."""
    school = organisations.get(session, school_id)
    access.require(actor, roles=ADMIN_ROLES, org_path=school.path, scope=SCOPE_PEOPLE_WRITE)
    if school.kind != "school":
        raise InvalidInput(
            "People are imported into a school.",
            errors=[FieldError(field="school_id", message="not a school")],
        )
    content = file.file.read(settings.import_max_bytes + 1)
    if len(content) > settings.import_max_bytes:
        raise PayloadTooLarge(
            f"文件超过 {settings.import_max_bytes // (1024 * 1024)} MB 上限，请拆分后上传 / "
            f"the file is larger than {settings.import_max_bytes // (1024 * 1024)} MB; split it"
        )
    table = service.parse(
        kind,
        file.filename or "upload",
        content,
        max_bytes=settings.import_max_bytes,
        max_rows=settings.import_max_rows,
    )
    job = service.create_job(
        session, kind=kind, school=school, mode=mode, filename=file.filename or "upload", content=content,
        table=table, requested_by=actor.person_id,
    )  # fmt: skip
    audit.record(
        session, action="import.start", actor=actor, target_type="import_job", target_id=job.id, org_id=school.id,
        detail={"kind": kind, "mode": mode, "rows": len(table.rows), "sha256": table.content_sha256},
    )  # fmt: skip
    runner: service.ImportRunner = request.app.state.import_runner
    # Start only after this request's transaction committed the job.
    after_commit(session, lambda: runner.submit(job.id, table))
    response.headers["Location"] = f"/imports/{job.id}"
    return _read(job, runner)


@router.get("/{job_id}", response_model=ImportJobRead)
def read_import(request: Request, session: ReadSessionDep, actor: ActorDep, job_id: str) -> ImportJobRead:
    """Progress and, when finished, the report (row, column, reason) of an import job."""
    job = session.get(ImportJob, job_id)
    if job is None:
        raise ImportJobNotFound(f"No import job has id {job_id!r}.")
    school = organisations.get(session, job.school_id)
    if not organisations.within(school.path, access.scope_paths(actor, ADMIN_ROLES)):
        raise ImportJobNotFound(f"No import job has id {job_id!r}.")
    access.require(actor, roles=ADMIN_ROLES, org_path=school.path, scope=SCOPE_PEOPLE_WRITE)
    return _read(job, request.app.state.import_runner)


@router.get("", response_model=Page[ImportJobRead])
def list_imports(
    request: Request, session: ReadSessionDep, actor: ActorDep, page: PageDep, school_id: str
) -> Page[ImportJobRead]:
    """A school's import jobs, newest first."""
    school = organisations.get(session, school_id)
    access.require(actor, roles=ADMIN_ROLES, org_path=school.path, scope=SCOPE_PEOPLE_WRITE)
    query = select(ImportJob).where(ImportJob.school_id == school.id)
    rows, total = fetch_page(
        session, query, order_by=[col(ImportJob.created_at).desc()], limit=page.limit, offset=page.offset
    )
    runner = request.app.state.import_runner
    return Page(items=[_read(row, runner) for row in rows], total=total, **page.model_dump())

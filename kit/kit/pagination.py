"""Offset pagination shared by every list endpoint."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Generic, TypeVar

import sqlalchemy as sa
from fastapi import Depends, Query
from pydantic import BaseModel
from sqlmodel import Session, select
from sqlmodel.sql.expression import SelectOfScalar


class PageParams(BaseModel):
    limit: int
    offset: int


def page_params(
    limit: Annotated[int, Query(ge=1, le=200, description="Items per page (1–200)")] = 50,
    offset: Annotated[int, Query(ge=0, description="Items to skip")] = 0,
) -> PageParams:
    return PageParams(limit=limit, offset=offset)


T = TypeVar("T")
M = TypeVar("M")


class Page(BaseModel, Generic[T]):
    """One page of a list, with the total number of matching items."""

    items: list[T]
    total: int
    limit: int
    offset: int


PageDep = Annotated[PageParams, Depends(page_params)]


def fetch_page(
    session: Session, query: SelectOfScalar[M], *, order_by: Sequence[Any], limit: int, offset: int
) -> tuple[list[M], int]:
    """One page of ``query`` in a stable order, with the number of all matching rows."""
    total = session.exec(select(sa.func.count()).select_from(query.subquery())).one()
    rows = session.exec(query.order_by(*order_by).limit(limit).offset(offset)).all()
    return list(rows), int(total)

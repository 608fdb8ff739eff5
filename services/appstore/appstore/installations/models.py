"""Tables of installations (an app's deployment at a school) and teachers' app requests."""

from __future__ import annotations

import json
from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from appstore.vendors.models import new_id
from kit.outbox import utcnow

_TZ = sa.DateTime(timezone=True)


class Installation(SQLModel, table=True):
    """An app installed at one school (its LTI deployment), with what the school granted it."""

    __tablename__ = "installation"
    # One school has at most one active installation of an app; removed ones stay as history.
    __table_args__ = (
        sa.Index(
            "uq_installation_active_app_school",
            "app_id",
            "school_id",
            unique=True,
            sqlite_where=sa.text("status = 'active'"),
            postgresql_where=sa.text("status = 'active'"),
        ),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)  # also the LTI deployment_id
    app_id: str = Field(foreign_key="app.id", index=True, max_length=36)
    school_id: str = Field(index=True, max_length=36)
    school_path: str = Field(max_length=200)
    client_id: str = Field(max_length=64, index=True)
    version_id: str = Field(max_length=36)  # the version whose scopes the school granted
    scopes: str = Field(sa_type=sa.Text)  # space-separated scopes the school granted
    grades: str = Field(default="[]", sa_type=sa.Text)  # JSON list of CEDS grade codes; empty: every grade
    class_ids: str = Field(default="[]", sa_type=sa.Text)  # JSON list of class ids; empty: every class
    status: str = Field(default="active", max_length=16, index=True)  # active | removed
    installed_by: str = Field(max_length=36)
    installed_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)
    removed_at: datetime | None = Field(default=None, sa_type=_TZ)
    removal_reason: str | None = Field(default=None, max_length=20)
    delete_data_by: date | None = None

    @property
    def grade_list(self) -> list[str]:
        return [str(grade) for grade in json.loads(self.grades or "[]")]

    @property
    def class_id_list(self) -> list[str]:
        return [str(class_id) for class_id in json.loads(self.class_ids or "[]")]

    def opens_class(self, class_id: str | None, grade: str | None) -> bool:
        """Whether the school opened the app to this class: to every class when it named no grades and no classes,
        otherwise to the classes of the grades it named and to the classes it named (either is enough)."""
        grades, class_ids = self.grade_list, self.class_id_list
        if not grades and not class_ids:
            return True
        return (grade is not None and grade in grades) or (class_id is not None and class_id in class_ids)


class AppRequest(SQLModel, table=True):
    """A teacher asks the school's administrators to install an app; they approve or decline it."""

    __tablename__ = "app_request"
    # One pending request per teacher and app: asking twice adds nothing for the administrator.
    __table_args__ = (
        sa.Index(
            "uq_app_request_pending",
            "app_id",
            "school_id",
            "requested_by",
            unique=True,
            sqlite_where=sa.text("status = 'pending'"),
            postgresql_where=sa.text("status = 'pending'"),
        ),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    app_id: str = Field(foreign_key="app.id", index=True, max_length=36)
    school_id: str = Field(index=True, max_length=36)
    requested_by: str = Field(max_length=36, index=True)
    reason: str = Field(max_length=500)
    status: str = Field(default="pending", max_length=16, index=True)  # pending | approved | declined
    requested_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)
    decided_by: str | None = Field(default=None, max_length=36)
    decided_at: datetime | None = Field(default=None, sa_type=_TZ)
    decision_note: str | None = Field(default=None, max_length=500)
    installation_id: str | None = Field(default=None, max_length=36)

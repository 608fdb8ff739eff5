"""Tables of the webhooks sub-domain: each app's signing secrets, its deliveries and every attempt at them."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from appstore.vendors.models import new_id
from kit.outbox import utcnow

_TZ = sa.DateTime(timezone=True)

# A delivery's life: pending (queued, maybe leased by a worker) → delivered | dead (every try failed) | cancelled
# (the installation was removed or the app stopped subscribing before it could be sent). Replay and redeliver put
# a delivered or dead one back to pending.
DELIVERY_STATUSES = ("pending", "delivered", "dead", "cancelled")


class WebhookSecret(SQLModel, table=True):
    """One generation of an app's signing secret, stored encrypted; a rotated one signs until ``retires_at``."""

    __tablename__ = "webhook_secret"

    app_id: str = Field(foreign_key="app.id", primary_key=True, max_length=36)
    # Generations count up from 1; the primary key makes two concurrent "first" secrets impossible.
    generation: int = Field(primary_key=True)
    secret_encrypted: str = Field(sa_type=sa.Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)
    retires_at: datetime | None = Field(default=None, sa_type=_TZ)  # None: the current secret


class WebhookSequence(SQLModel, table=True):
    """The last delivery sequence number handed out for an app (locked while a new one is taken)."""

    __tablename__ = "webhook_sequence"

    app_id: str = Field(primary_key=True, max_length=36)
    last_sequence: int = 0


class WebhookInstallationSeen(SQLModel, table=True):
    """Installations whose first grant the fan-out has seen: a later grant is ``installation.updated``."""

    __tablename__ = "webhook_installation_seen"

    installation_id: str = Field(primary_key=True, max_length=36)
    first_event_id: str = Field(max_length=64)
    seen_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)


class WebhookDelivery(SQLModel, table=True):
    """One event for one installation of one app; its id is the ``webhook-id`` of every attempt."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        sa.UniqueConstraint("app_id", "sequence"),
        # One platform event gives an installation at most one delivery of a type, however often it arrives.
        sa.UniqueConstraint("source_event_id", "installation_id", "event_type"),
        # The claim's scan: due pending deliveries in time order.
        sa.Index(
            "ix_webhook_delivery_due",
            "next_attempt_at",
            postgresql_where=sa.text("status = 'pending'"),
            sqlite_where=sa.text("status = 'pending'"),
        ),
    )

    id: str = Field(default_factory=lambda: "msg_" + new_id().replace("-", ""), primary_key=True, max_length=40)
    app_id: str = Field(foreign_key="app.id", index=True, max_length=36)
    sequence: int  # per app, increasing in commit order: the vendor's cursor
    installation_id: str = Field(index=True, max_length=36)
    school_id: str = Field(max_length=36)
    source_event_id: str = Field(max_length=64)
    event_type: str = Field(max_length=40)
    body: str = Field(sa_type=sa.Text)  # the JSON sent, fixed at fan-out so every attempt signs the same bytes
    url: str = Field(max_length=2000)  # the endpoint of the last attempt (or of the manifest at fan-out)
    endpoint: str = Field(max_length=300)  # scheme://host:port of ``url``: the unit of concurrency limits
    status: str = Field(default="pending", max_length=16, index=True)
    attempts: int = 0  # attempts in the current run (a replay starts a new run)
    total_attempts: int = 0
    replays: int = 0
    run_trigger: str = Field(
        default="scheduled", max_length=16
    )  # what started the current run: scheduled | replay | redeliver
    next_attempt_at: datetime | None = Field(default_factory=utcnow, sa_type=_TZ)
    lease_token: str | None = Field(default=None, max_length=36)
    lease_until: datetime | None = Field(default=None, sa_type=_TZ)
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)
    delivered_at: datetime | None = Field(default=None, sa_type=_TZ)
    dead_at: datetime | None = Field(default=None, sa_type=_TZ)
    cancelled_reason: str | None = Field(default=None, max_length=200)


class WebhookAttempt(SQLModel, table=True):
    """One HTTP attempt at a delivery, as the vendor sees it in the delivery's history."""

    __tablename__ = "webhook_attempt"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: str = Field(foreign_key="webhook_delivery.id", index=True, max_length=40)
    number: int  # 1, 2, ... over the delivery's whole life, replays included
    trigger: str = Field(max_length=16)  # scheduled | replay | redeliver
    started_at: datetime = Field(sa_type=_TZ)
    duration_ms: int
    # delivered | http_error | timeout | network_error | unsafe_url
    outcome: str = Field(max_length=16)
    status_code: int | None = None
    error: str | None = Field(default=None, max_length=500)

"""benefit flags withdrawn when the app ranks within the thresholds again

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("benefit_flag", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recovered_period", sqlmodel.sql.sqltypes.AutoString(length=7), nullable=True))
        batch_op.add_column(sa.Column("recovered_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("benefit_flag", schema=None) as batch_op:
        batch_op.drop_column("recovered_at")
        batch_op.drop_column("recovered_period")

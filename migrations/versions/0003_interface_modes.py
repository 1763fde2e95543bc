"""interface modes per team and key

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 09:54:24.901491
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("interface_mode", sa.String(length=16), nullable=True))

    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.add_column(sa.Column("interface_mode", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.drop_column("interface_mode")

    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("interface_mode")

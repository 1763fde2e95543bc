"""search keywords an admin adds to a tool (catalog_entries.keywords)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 04:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("catalog_entries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("keywords", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("catalog_entries", schema=None) as batch_op:
        batch_op.drop_column("keywords")

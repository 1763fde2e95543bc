"""sandboxes.memory_bytes: the memory a running sandbox used when last measured (the
mcpgw_sandbox_memory_bytes gauge); jobs.trace: the W3C context of the request that
created a job, for attempts queued where no trace is current (the reaper)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08 00:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sandboxes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("memory_bytes", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("trace", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("trace")
    with op.batch_alter_table("sandboxes", schema=None) as batch_op:
        batch_op.drop_column("memory_bytes")

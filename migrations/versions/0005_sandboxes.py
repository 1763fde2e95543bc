"""sandboxes: sandboxes, admin-defined sandbox templates, sandbox audit events

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21 14:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sandboxes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("owner_id", sa.String(length=36), nullable=True),
        sa.Column("template", sa.String(length=64), nullable=False),
        sa.Column("image", sa.String(length=255), nullable=True),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("limits", sa.JSON(), nullable=False),
        sa.Column("network", sa.String(length=16), nullable=False),
        sa.Column("provider_state", sa.JSON(), nullable=False),
        sa.Column("session_key", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("last_activity_at", sa.DateTime(), nullable=False),
        sa.Column("stopped_at", sa.DateTime(), nullable=True),
        sa.Column("destroyed_at", sa.DateTime(), nullable=True),
        sa.Column("exec_count", sa.Integer(), nullable=False),
        sa.Column("cpu_seconds", sa.Float(), nullable=False),
        sa.Column("disk_bytes", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
            name=op.f("fk_sandboxes_owner_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandboxes")),
    )
    with op.batch_alter_table("sandboxes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sandboxes_owner_id"), ["owner_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_sandboxes_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_sandboxes_session_key"), ["session_key"], unique=False)

    op.create_table(
        "sandbox_templates",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("image", sa.String(length=255), nullable=True),
        sa.Column("languages", sa.JSON(), nullable=False),
        sa.Column("env", sa.JSON(), nullable=False),
        sa.Column("limits", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_sandbox_templates")),
    )

    op.create_table(
        "sandbox_events",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("sandbox_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=True),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("command", sa.Text(), nullable=True),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_events")),
    )
    with op.batch_alter_table("sandbox_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sandbox_events_sandbox_id"), ["sandbox_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_sandbox_events_user_id"), ["user_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_sandbox_events_at"), ["at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sandbox_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sandbox_events_at"))
        batch_op.drop_index(batch_op.f("ix_sandbox_events_user_id"))
        batch_op.drop_index(batch_op.f("ix_sandbox_events_sandbox_id"))
    op.drop_table("sandbox_events")
    op.drop_table("sandbox_templates")
    with op.batch_alter_table("sandboxes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sandboxes_session_key"))
        batch_op.drop_index(batch_op.f("ix_sandboxes_status"))
        batch_op.drop_index(batch_op.f("ix_sandboxes_owner_id"))
    op.drop_table("sandboxes")

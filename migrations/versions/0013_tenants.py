"""tenants: team quotas, team policy documents, the revision replicas follow; a
sandbox names the team it counts against

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("teams") as batch:
        batch.add_column(sa.Column("max_servers", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("max_sandboxes", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("max_skills", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("calls_per_day", sa.Integer(), nullable=True))
    with op.batch_alter_table("sandboxes") as batch:
        batch.add_column(sa.Column("team_id", sa.String(length=36), nullable=True))
        batch.create_foreign_key(
            batch.f("fk_sandboxes_team_id_teams"), "teams", ["team_id"], ["id"],
            ondelete="SET NULL",
        )  # fmt: skip
        batch.create_index(batch.f("ix_sandboxes_team_id"), ["team_id"], unique=False)
    op.create_table(
        "team_policy_versions",
        sa.Column("team_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=320), nullable=True),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["teams.id"],
            name=op.f("fk_team_policy_versions_team_id_teams"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("team_id", "version", name=op.f("pk_team_policy_versions")),
    )
    revisions = op.create_table(
        "tenancy_revision",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenancy_revision")),
    )
    op.bulk_insert(revisions, [{"id": 1, "revision": 0}])


def downgrade() -> None:
    op.drop_table("tenancy_revision")
    op.drop_table("team_policy_versions")
    with op.batch_alter_table("sandboxes") as batch:
        batch.drop_index(batch.f("ix_sandboxes_team_id"))
        batch.drop_constraint(batch.f("fk_sandboxes_team_id_teams"), type_="foreignkey")
        batch.drop_column("team_id")
    with op.batch_alter_table("teams") as batch:
        batch.drop_column("calls_per_day")
        batch.drop_column("max_skills")
        batch.drop_column("max_sandboxes")
        batch.drop_column("max_servers")

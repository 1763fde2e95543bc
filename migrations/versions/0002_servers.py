"""servers: registry, versions, catalog

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 09:14:54.663149
"""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "servers",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("env", sa.JSON(), nullable=False),
        sa.Column("secrets_sealed", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("max_concurrency", sa.Integer(), nullable=True),
        sa.Column("owner_id", sa.String(length=36), nullable=True),
        sa.Column("team_id", sa.String(length=36), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("checked_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_servers_owner_id_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_servers_team_id_teams"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_servers")),
        sa.UniqueConstraint("name", name=op.f("uq_servers_name")),
    )
    with op.batch_alter_table("servers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_servers_team_id"), ["team_id"], unique=False)

    op.create_table(
        "catalog_entries",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("server_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("definition_hash", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["server_id"],
            ["servers.id"],
            name=op.f("fk_catalog_entries_server_id_servers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_entries")),
        sa.UniqueConstraint("server_id", "kind", "name", name=op.f("uq_catalog_entries_server_id")),
    )
    with op.batch_alter_table("catalog_entries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_catalog_entries_server_id"), ["server_id"], unique=False
        )

    op.create_table(
        "server_versions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("server_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("changed_by", sa.String(length=36), nullable=True),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["server_id"],
            ["servers.id"],
            name=op.f("fk_server_versions_server_id_servers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_server_versions")),
        sa.UniqueConstraint("server_id", "version", name=op.f("uq_server_versions_server_id")),
    )

    _seed_essentials()


def _seed_essentials() -> None:
    """Register the built-in essentials bundle on a fresh install (once: an admin who
    removes it keeps it removed)."""
    # Frozen here as they were at this revision: a migration must not change when the
    # live code does (gateway/servers/essentials holds today's values).
    essentials_config = {
        "members": [
            {
                "name": name,
                "type": "generated",
                "config": {
                    "module": f"gateway.servers.essentials.{name}:server",
                    "attribute": "server",
                },
            }
            for name in ("calculator", "git", "documents")
        ]
    }
    essentials_description = (
        "Built-in tools that need no network: exact calculator (arithmetic, statistics, "
        "unit conversion), read-only git over MCPGW_GIT_ROOTS, and deterministic "
        "HTML/PDF/DOCX documents."
    )

    now = datetime.now(UTC).replace(tzinfo=None)
    servers = sa.table(
        "servers",
        sa.column("id", sa.String),
        sa.column("name", sa.String),
        sa.column("type", sa.String),
        sa.column("config", sa.JSON),
        sa.column("env", sa.JSON),
        sa.column("description", sa.Text),
        sa.column("tags", sa.JSON),
        sa.column("enabled", sa.Boolean),
        sa.column("version", sa.Integer),
        sa.column("status", sa.String),
        sa.column("created_at", sa.DateTime),
        sa.column("updated_at", sa.DateTime),
    )
    versions = sa.table(
        "server_versions",
        sa.column("id", sa.String),
        sa.column("server_id", sa.String),
        sa.column("version", sa.Integer),
        sa.column("snapshot", sa.JSON),
        sa.column("summary", sa.Text),
        sa.column("changed_at", sa.DateTime),
    )
    server_id = str(uuid.uuid4())
    op.bulk_insert(
        servers,
        [
            {
                "id": server_id,
                "name": "essentials",
                "type": "bundle",
                "config": essentials_config,
                "env": {},
                "description": essentials_description,
                "tags": ["builtin"],
                "enabled": True,
                "version": 1,
                "status": "stopped",
                "created_at": now,
                "updated_at": now,
            }
        ],
    )
    op.bulk_insert(
        versions,
        [
            {
                "id": str(uuid.uuid4()),
                "server_id": server_id,
                "version": 1,
                "snapshot": {"type": "bundle", "config": essentials_config},
                "summary": "built-in bundle installed",
                "changed_at": now,
            }
        ],
    )


def downgrade() -> None:
    op.drop_table("server_versions")
    with op.batch_alter_table("catalog_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_catalog_entries_server_id"))

    op.drop_table("catalog_entries")
    with op.batch_alter_table("servers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_servers_team_id"))

    op.drop_table("servers")

"""audit: one audit trail for the platform (audit_events, audit_boundaries); the
sandboxes' own audit events are folded into it, keeping their history

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 19:30:00.000000
"""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The chain of the folded rows: one stream of its own, hashed as the writer hashes.
FOLDED_STREAM = "sandbox-events-0005"

_POSITION = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _create_tables() -> None:
    op.create_table(
        "audit_events",
        sa.Column("pos", _POSITION, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("ts", sa.DateTime(), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("trace_id", sa.String(length=32), nullable=True),
        sa.Column("actor_user_id", sa.String(length=36), nullable=True),
        sa.Column("actor_email", sa.String(length=320), nullable=True),
        sa.Column("actor_key_id", sa.String(length=36), nullable=True),
        sa.Column("actor_key_prefix", sa.String(length=32), nullable=True),
        sa.Column("actor_team", sa.String(length=36), nullable=True),
        sa.Column("actor_role", sa.String(length=16), nullable=True),
        sa.Column("auth_method", sa.String(length=16), nullable=True),
        sa.Column("client_ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=256), nullable=True),
        sa.Column("client_name", sa.String(length=128), nullable=True),
        sa.Column("client_version", sa.String(length=64), nullable=True),
        sa.Column("protocol", sa.String(length=16), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("route", sa.String(length=16), nullable=True),
        sa.Column("server", sa.String(length=128), nullable=True),
        sa.Column("target", sa.String(length=512), nullable=True),
        sa.Column("via", sa.String(length=64), nullable=True),
        sa.Column("arguments", sa.Text(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("bytes_in", sa.BigInteger(), nullable=True),
        sa.Column("bytes_out", sa.BigInteger(), nullable=True),
        sa.Column("tokens", sa.BigInteger(), nullable=True),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("pos", name=op.f("pk_audit_events")),
        sa.UniqueConstraint("id", name=op.f("uq_audit_events_id")),
        sa.UniqueConstraint("stream", "seq", name="uq_audit_events_stream_seq"),
    )
    for name, columns in (
        ("ix_audit_events_ts_id", ["ts", "id"]),
        ("ix_audit_events_server_ts", ["server", "ts"]),
        ("ix_audit_events_actor_ts", ["actor_user_id", "ts"]),
        ("ix_audit_events_email_ts", ["actor_email", "ts"]),
        ("ix_audit_events_team_ts", ["actor_team", "ts"]),
        ("ix_audit_events_action_ts", ["action", "ts"]),
        ("ix_audit_events_outcome_ts", ["outcome", "ts"]),
        ("ix_audit_events_target_ts", ["target", "ts"]),
    ):
        op.create_index(name, "audit_events", columns, unique=False)
    op.create_table(
        "audit_boundaries",
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("pruned_at", sa.DateTime(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("stream", name=op.f("pk_audit_boundaries")),
    )


def _json(value: Any) -> str | None:
    if value in (None, {}):
        return None
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def upgrade() -> None:
    from gateway.audit.chain import GENESIS, row_hash

    _create_tables()
    conn = op.get_bind()
    old = conn.execute(
        sa.text(
            "SELECT id, sandbox_id, user_id, action, command, path, exit_code, duration_ms,"
            " detail, at FROM sandbox_events ORDER BY at, id"
        )
    ).mappings()
    events = sa.table(
        "audit_events", *(sa.column(c) for c in ("id", "ts", "stream", "seq", "prev_hash", "hash"))
    )
    prev, rows = GENESIS, []
    for seq, e in enumerate(old, start=1):
        detail = e["detail"]
        if isinstance(detail, str):
            detail = orjson.loads(detail) if detail else {}
        detail = dict(detail or {})
        if e["exit_code"] is not None:
            detail["exit_code"] = e["exit_code"]
        args = {k: e[k] for k in ("command", "path") if e[k] is not None}
        at = e["at"]
        if isinstance(at, str):  # SQLite hands raw text back
            at = datetime.fromisoformat(at)
        ts = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
        outcome = (
            "error"
            if "error" in detail
            else ("tool_error" if e["exit_code"] not in (None, 0) else "ok")
        )
        row: dict[str, Any] = {
            "id": uuid.UUID(e["id"]).hex if len(e["id"]) == 36 else e["id"][:32],
            "ts": ts,
            "request_id": None, "trace_id": None,
            "actor_user_id": e["user_id"], "actor_email": None, "actor_key_id": None,
            "actor_key_prefix": None, "actor_team": None, "actor_role": None,
            "auth_method": None, "client_ip": None, "user_agent": None,
            "client_name": None, "client_version": None, "protocol": None,
            "action": f"sandbox.{e['action']}", "route": None, "server": None,
            "target": e["sandbox_id"], "via": None,
            "arguments": _json(args), "detail": _json(detail),
            "outcome": outcome, "error_code": None,
            "error": detail.get("error") if isinstance(detail.get("error"), str) else None,
            "latency_ms": e["duration_ms"], "bytes_in": None, "bytes_out": None, "tokens": None,
            "stream": FOLDED_STREAM, "seq": seq,
        }  # fmt: skip
        row["prev_hash"] = prev
        row["hash"] = prev = row_hash(row, prev)
        row["ts"] = ts.replace(tzinfo=None)  # stored naive UTC, as UTCDateTime does
        rows.append(row)
    if rows:
        events = sa.table("audit_events", *(sa.column(c) for c in rows[0]))
        op.bulk_insert(events, rows)
    op.drop_table("sandbox_events")


def downgrade() -> None:
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
    conn = op.get_bind()
    kept = conn.execute(
        sa.text(
            "SELECT id, target, actor_user_id, action, arguments, detail, latency_ms, ts"
            " FROM audit_events WHERE action LIKE 'sandbox.%' ORDER BY ts"
        )
    ).mappings()
    back = []
    for e in kept:
        args = orjson.loads(e["arguments"]) if e["arguments"] else {}
        detail = orjson.loads(e["detail"]) if e["detail"] else {}
        exit_code = detail.pop("exit_code", None)
        back.append(
            {
                "id": str(uuid.UUID(e["id"])) if len(e["id"]) == 32 else e["id"],
                "sandbox_id": e["target"],
                "user_id": e["actor_user_id"],
                "action": e["action"].removeprefix("sandbox.")[:32],
                "command": args.get("command"),
                "path": args.get("path"),
                "exit_code": exit_code,
                "duration_ms": e["latency_ms"],
                "detail": detail,
                "at": e["ts"],
            }
        )
    if back:
        table = sa.table(
            "sandbox_events",
            *(sa.column(c) for c in back[0] if c != "detail"),
            sa.column("detail", sa.JSON()),
        )
        op.bulk_insert(table, back)
    op.drop_table("audit_boundaries")
    for name in (
        "ix_audit_events_target_ts",
        "ix_audit_events_outcome_ts",
        "ix_audit_events_action_ts",
        "ix_audit_events_team_ts",
        "ix_audit_events_email_ts",
        "ix_audit_events_actor_ts",
        "ix_audit_events_server_ts",
        "ix_audit_events_ts_id",
    ):
        op.drop_index(name, table_name="audit_events")
    op.drop_table("audit_events")

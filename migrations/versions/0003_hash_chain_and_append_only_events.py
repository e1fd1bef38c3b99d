"""hash chain and append-only events

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 20:10:00

Adds prev_hash and hash to every event (computing them for events already stored, in position order) and
makes the events table refuse UPDATE, DELETE (and, on PostgreSQL, TRUNCATE) with triggers.
"""

import datetime as dt
import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS = "0" * 64
REFUSAL = "events are append-only: record a new event (a correction) instead of changing or removing one"


def _hash(prev_hash: str, row: sa.Row) -> str:  # type: ignore[type-arg]
    # A frozen copy of the recipe in timeline.store.chain (and docs/audit.md): migrations must not change
    # meaning when the application code does.
    recorded_at = row.recorded_at
    if recorded_at.tzinfo is None:
        recorded_at = recorded_at.replace(tzinfo=dt.UTC)
    fields = [
        str(row.position),
        str(row.event_id),
        row.stream_id,
        str(row.stream_version),
        row.type,
        str(row.schema_version),
        row.data,
        row.metadata,
        row.valid_from.isoformat() if row.valid_from is not None else "",
        recorded_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    ]
    return hashlib.sha256(prev_hash.encode() + b"\n" + "\n".join(fields).encode()).hexdigest()


def upgrade() -> None:
    with op.batch_alter_table("events", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("hash", sa.String(length=64), nullable=True))

    bind = op.get_bind()
    events = sa.table(
        "events",
        *(
            sa.column(name)
            for name in (
                "position",
                "event_id",
                "stream_id",
                "stream_version",
                "type",
                "schema_version",
                "data",
                "metadata",
                "valid_from",
                "prev_hash",
                "hash",
            )
        ),
        sa.column("recorded_at", sa.DateTime(timezone=True)),
        sa.column("event_id", sa.Uuid()),
        sa.column("valid_from", sa.Date()),
    )
    prev = GENESIS
    rows = bind.execute(sa.select(events).order_by(events.c.position)).fetchall()
    for row in rows:
        digest = _hash(prev, row)
        bind.execute(
            sa.update(events).where(events.c.position == row.position).values(prev_hash=prev, hash=digest)
        )
        prev = digest

    with op.batch_alter_table("events", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.alter_column("prev_hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column("hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint(batch_op.f("uq_events_hash"), ["hash"])

    # Views are refolded from the log by `timeline serve` / `timeline rebuild` (their stored shape changed).
    for table in ("claims", "estimates", "timeline", "registrations", "projection_checkpoints"):
        op.execute(sa.text(f"DELETE FROM {table}"))

    if bind.dialect.name == "postgresql":
        op.execute(
            sa.text(
                "CREATE FUNCTION events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ "
                f"BEGIN RAISE EXCEPTION '{REFUSAL}' USING ERRCODE = 'restrict_violation'; END $$"
            )
        )
        op.execute(
            sa.text(
                "CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events "
                "FOR EACH ROW EXECUTE FUNCTION events_refuse_change()"
            )
        )
        op.execute(
            sa.text(
                "CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events "
                "FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change()"
            )
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                sa.text(
                    f"CREATE TRIGGER events_no_{action.lower()} BEFORE {action} ON events "
                    f"BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END"
                )
            )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(sa.text("DROP TRIGGER events_no_truncate ON events"))
        op.execute(sa.text("DROP TRIGGER events_append_only ON events"))
        op.execute(sa.text("DROP FUNCTION events_refuse_change()"))
    else:
        op.execute(sa.text("DROP TRIGGER events_no_update"))
        op.execute(sa.text("DROP TRIGGER events_no_delete"))
    with op.batch_alter_table("events", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_events_hash"), type_="unique")
        batch_op.drop_column("hash")
        batch_op.drop_column("prev_hash")

"""a Merkle tree over the log, signed checkpoints and witnesses' cosignatures

Revision ID: 0007_audit_proofs
Revises: 0006_core_read
Create Date: 2026-12-03 07:00:00

The tree's stored nodes (level 4 and up) are built here for the events already in the log; no checkpoint
is signed by a migration (it has no key): the next write, or `timeline serve`, signs one.
"""

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_audit_proofs"
down_revision: str | None = "0006_core_read"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of timeline.store.tree.STORED and RFC 9162's hashing: migrations must not change with the
# code.
STORED = 4


def upgrade() -> None:
    nodes = op.create_table(
        "tree_nodes",
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name=op.f("pk_tree_nodes")),
    )
    op.create_table(
        "log_checkpoints",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root_hash", sa.String(length=64), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("size", name=op.f("pk_log_checkpoints")),
    )
    op.create_table(
        "cosignatures",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("witness", sa.String(length=200), nullable=False),
        sa.Column("verifier_key", sa.Text(), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("size", "witness", name=op.f("pk_cosignatures")),
    )
    _build(op.get_bind(), nodes)


def _build(bind: sa.Connection, nodes: sa.Table) -> None:
    roots: list[bytes] = []
    made: list[dict[str, object]] = []
    rows = bind.execute(sa.text("SELECT hash FROM events ORDER BY position"))
    for size, (digest,) in enumerate(rows):
        acc = hashlib.sha256(b"\x00" + bytes.fromhex(digest)).digest()
        index, level = size, 0
        while index & 1:
            acc = hashlib.sha256(b"\x01" + roots.pop() + acc).digest()
            index, level = index >> 1, level + 1
            if level >= STORED:
                made.append({"level": level, "idx": index, "hash": acc})
        roots.append(acc)
        if len(made) >= 10_000:
            op.bulk_insert(nodes, made)
            made = []
    if made:
        op.bulk_insert(nodes, made)


def downgrade() -> None:
    op.drop_table("cosignatures")
    op.drop_table("log_checkpoints")
    op.drop_table("tree_nodes")

"""Consortium workflow: labels, vetting history, incidents, feedback, outcomes,
match counts, the audit chain, sync state; hashes gain expires_at and incident_id.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Stamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Plain nullable columns: SQLite adds them in place, no table copy.
    with op.batch_alter_table("hashes") as batch:
        batch.add_column(sa.Column("expires_at", Stamp, nullable=True))
        batch.add_column(sa.Column("incident_id", sa.BigInteger, nullable=True))
    op.create_table(
        "labels",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("value_kind", sa.String(16), nullable=False),
        sa.Column("created_at", Stamp, nullable=False),
        sa.Column("deprecated_at", Stamp, nullable=True),
    )
    op.create_table(
        "hash_transitions",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("hash_id", sa.BigInteger, sa.ForeignKey("hashes.id"), nullable=False),
        sa.Column("from_status", sa.String(16), nullable=True),
        sa.Column("to_status", sa.String(16), nullable=False),
        sa.Column("actor_id", sa.BigInteger, sa.ForeignKey("members.id"), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("at", Stamp, nullable=False),
    )
    op.create_index("ix_hash_transitions_hash_id", "hash_transitions", ["hash_id"])
    op.create_index("ix_hash_transitions_to_at", "hash_transitions", ["to_status", "at"])
    op.create_table(
        "incidents",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("started_at", Stamp, nullable=False),
        sa.Column("ended_at", Stamp, nullable=True),
        sa.Column("opened_by", sa.BigInteger, sa.ForeignKey("members.id"), nullable=False),
        sa.Column("closed_by", sa.BigInteger, sa.ForeignKey("members.id"), nullable=True),
    )
    op.create_table(
        "feedback",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("hash_id", sa.BigInteger, sa.ForeignKey("hashes.id"), nullable=False),
        sa.Column("member_id", sa.BigInteger, sa.ForeignKey("members.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32), nullable=True),
        sa.Column("content_signal_type", sa.String(16), nullable=True),
        sa.Column("content_value", sa.LargeBinary, nullable=True),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("created_at", Stamp, nullable=False),
    )
    op.create_index("ix_feedback_hash_id", "feedback", ["hash_id"])
    op.create_index("ix_feedback_created_at", "feedback", ["created_at"])
    op.create_table(
        "outcomes",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("hash_id", sa.BigInteger, sa.ForeignKey("hashes.id"), nullable=False),
        sa.Column("member_id", sa.BigInteger, sa.ForeignKey("members.id"), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("uploaded_at", Stamp, nullable=False),
        sa.Column("matched_at", Stamp, nullable=False),
        sa.Column("actioned_at", Stamp, nullable=False),
        sa.Column("created_at", Stamp, nullable=False),
    )
    op.create_index("ix_outcomes_hash_id", "outcomes", ["hash_id"])
    op.create_index("ix_outcomes_actioned_at", "outcomes", ["actioned_at"])
    op.create_table(
        "match_counts",
        sa.Column("bucket", Stamp, primary_key=True),
        sa.Column("member_id", sa.BigInteger, primary_key=True),
        sa.Column("hash_id", sa.BigInteger, primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("at", Stamp, nullable=False),
        sa.Column("actor_id", sa.BigInteger, nullable=True),
        sa.Column("key_id", sa.BigInteger, nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("request_id", sa.String(100), nullable=True),
        sa.Column("details", sa.JSON, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "sync_sources",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("url", sa.String(500), nullable=False, unique=True),
        sa.Column("member_id", sa.BigInteger, sa.ForeignKey("members.id"), nullable=False),
        sa.Column("cursor", sa.BigInteger, nullable=False),
        sa.Column("updated_at", Stamp, nullable=False),
    )
    op.create_table(
        "synced_hashes",
        sa.Column("source_id", sa.BigInteger, sa.ForeignKey("sync_sources.id"), primary_key=True),
        sa.Column("remote_id", sa.BigInteger, primary_key=True),
        sa.Column("hash_id", sa.BigInteger, sa.ForeignKey("hashes.id"), nullable=False),
        sa.Column("live", sa.Boolean, nullable=False),
    )
    op.create_index("ix_synced_hashes_hash_id", "synced_hashes", ["hash_id"])


def downgrade() -> None:
    for table in (
        "synced_hashes",
        "sync_sources",
        "audit_log",
        "match_counts",
        "outcomes",
        "feedback",
        "incidents",
        "hash_transitions",
        "labels",
    ):
        op.drop_table(table)
    with op.batch_alter_table("hashes") as batch:
        batch.drop_column("incident_id")
        batch.drop_column("expires_at")

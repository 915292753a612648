"""Initial tables: members, API keys, hashes and the change log.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Stamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "members",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("trusted", sa.Boolean, nullable=False),
        sa.Column("created_at", Stamp, nullable=False),
        sa.Column("disabled_at", Stamp, nullable=True),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("member_id", sa.BigInteger, sa.ForeignKey("members.id"), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created_at", Stamp, nullable=False),
        sa.Column("expires_at", Stamp, nullable=True),
        sa.Column("revoked_at", Stamp, nullable=True),
    )
    op.create_index("ix_api_keys_member_id", "api_keys", ["member_id"])
    op.create_table(
        "hashes",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("signal_type", sa.String(16), nullable=False),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column("quality", sa.SmallInteger, nullable=True),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("contributor_id", sa.BigInteger, sa.ForeignKey("members.id"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reference", sa.Text, nullable=True),
        sa.Column("created_at", Stamp, nullable=False),
        sa.Column("updated_at", Stamp, nullable=False),
        sa.UniqueConstraint(
            "signal_type", "value", "contributor_id", name="uq_hash_per_contributor"
        ),
    )
    op.create_index("ix_hashes_signal_status", "hashes", ["signal_type", "status"])
    op.create_index("ix_hashes_value", "hashes", ["signal_type", "value"])
    op.create_table(
        "changes",
        sa.Column("seq", BigId, primary_key=True, autoincrement=True),
        sa.Column("hash_id", sa.BigInteger, nullable=False),
        sa.Column("op", sa.String(8), nullable=False),
        sa.Column("at", Stamp, nullable=False),
    )
    op.create_index("ix_changes_hash_id", "changes", ["hash_id"])


def downgrade() -> None:
    op.drop_table("changes")
    op.drop_table("hashes")
    op.drop_table("api_keys")
    op.drop_table("members")

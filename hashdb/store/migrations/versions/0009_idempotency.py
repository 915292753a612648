"""Idempotency keys: the first answer to each (API key, Idempotency-Key), kept so that
a retried POST is answered again without running twice.

One row per key pair (the primary key is the unique constraint): the request's
fingerprint (method, path, SHA-256 of the body), a claim token, when it was made and
when it expires, and, once the request succeeded, its status, JSON body and the
headers worth repeating. Nothing existed before, so nothing is copied.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("key_id", sa.BigInteger, sa.ForeignKey("api_keys.id"), primary_key=True),
        sa.Column("idempotency_key", sa.String(200), primary_key=True),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("body_sha256", sa.LargeBinary, nullable=False),
        sa.Column("token", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.SmallInteger, nullable=True),
        sa.Column("body", sa.Text, nullable=True),
        sa.Column("headers", sa.JSON, nullable=True),
    )
    op.create_index("ix_idempotency_keys_expires_at", "idempotency_keys", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_idempotency_keys_expires_at", "idempotency_keys")
    op.drop_table("idempotency_keys")

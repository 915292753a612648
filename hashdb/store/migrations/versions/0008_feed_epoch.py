"""The feed epoch: an id of this database's history, and the epoch a follower's
cursor belongs to.

A feed cursor is a change-log sequence number, which means something only in the
history that numbered it: after a restore from a backup or a promoted standby,
numbers are reused for other changes. `feed_epoch` holds one row, a random UUID
made when the schema is created (here, for databases created before), which every
feed page carries; a follower stores it with its cursor (`sync_sources.epoch`) and
resyncs from zero when the central's differs.

Revision ID: 0008
Revises: 0007
"""

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "feed_epoch",
        sa.Column("epoch", sa.String(36), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.bulk_insert(table, [{"epoch": str(uuid.uuid4()), "created_at": datetime.now(UTC)}])
    op.add_column("sync_sources", sa.Column("epoch", sa.String(36), nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE sync_sources DROP COLUMN epoch")
    else:
        op.drop_column("sync_sources", "epoch")
    op.drop_table("feed_epoch")

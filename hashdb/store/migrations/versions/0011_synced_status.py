"""The status a central gave each synced hash, so a follower keeps `disputed` apart.

A follower's local row is `active` while any remote hash mapped to it is live. The
central also says whether a live hash is `active` or `disputed` (enough members
said it matches content that does not belong), and members of the follower should
see the same: `synced_hashes.status` keeps the status of the remote hash's latest
entry. Existing mappings were synced without it (null): they are read as `active`,
what the follower showed until now, and the next entry for them fills it in.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("synced_hashes") as batch:
        batch.add_column(sa.Column("status", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("synced_hashes") as batch:
        batch.drop_column("status")

"""Keypoint sets: the wire form of each `keypoints` row, beside it.

A `keypoints` hash (hashdb/signals/keypoints.py) stores the SHA-256 of its set as
its value, which identifies it for idempotent adds and fits the value indexes; the
set itself (7 + 36 n bytes, 4,615 for 128 keypoints) lives here, one row per hash,
as a video's frames live in `video_frames`. Existing databases hold no keypoint
rows, so the upgrade only creates the table.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "keypoint_sets",
        sa.Column("hash_id", sa.BigInteger, sa.ForeignKey("hashes.id"), primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    # Without their sets the keypoints rows cannot match: they stay, retired, so an
    # older hashdb neither matches nor exports them as live.
    op.drop_table("keypoint_sets")
    hashes = sa.table("hashes", sa.column("signal_type"), sa.column("status"))
    op.execute(
        sa.update(hashes).where(hashes.c.signal_type == "keypoints").values(status="retired")
    )

"""Video keyframes: keypoint sets of a stored video's frames, every few seconds.

A copy of a video with a large logo burnt in, or regraded and boxed into another
frame size, drifts past PDQ's threshold frame after frame; the keypoint set of a
frame (hashdb/keypoints/codec.py) still finds the picture around the logo and
inside the bars. A stored video keeps the sets of frames a few seconds apart
(ingest/video.py, REFERENCE_KEYFRAMES), one row each, written with the
video and never changed, as its `video_frames` are. Existing videos have none
(they keep matching by their frames), so the upgrade only creates the table.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "video_keyframes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("hash_id", sa.BigInteger, sa.ForeignKey("hashes.id"), nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_video_keyframes_hash_id", "video_keyframes", ["hash_id"])


def downgrade() -> None:
    op.drop_index("ix_video_keyframes_hash_id", "video_keyframes")
    op.drop_table("video_keyframes")

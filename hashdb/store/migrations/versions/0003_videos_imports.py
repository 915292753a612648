"""Videos (a vpdq hash's shape and sampled frames) and bulk import jobs.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "videos",
        sa.Column("hash_id", sa.BigInteger, sa.ForeignKey("hashes.id"), primary_key=True),
        sa.Column("duration", sa.Float, nullable=False),
        sa.Column("fps", sa.Float, nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("low_quality_frames", sa.Integer, nullable=False),
    )
    op.create_table(
        "video_frames",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("hash_id", sa.BigInteger, sa.ForeignKey("hashes.id"), nullable=False),
        sa.Column("idx", sa.Integer, nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column("quality", sa.SmallInteger, nullable=False),
    )
    op.create_index("ix_video_frames_hash_id", "video_frames", ["hash_id"])
    stamp = sa.DateTime(timezone=True)
    op.create_table(
        "import_jobs",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("member_id", sa.BigInteger, sa.ForeignKey("members.id"), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", stamp, nullable=False),
        sa.Column("updated_at", stamp, nullable=False),
        sa.Column("finished_at", stamp, nullable=True),
    )
    op.create_table(
        "import_files",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.BigInteger, sa.ForeignKey("import_jobs.id"), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("reference", sa.Text, nullable=True),
        sa.Column("notes", sa.Text, nullable=True),
        sa.Column("sha256", sa.LargeBinary, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(8), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("hash_ids", sa.JSON, nullable=True),
        sa.Column("frames", sa.Integer, nullable=True),
        sa.Column("updated_at", stamp, nullable=False),
        sa.UniqueConstraint("job_id", "path", name="uq_import_file_path"),
    )
    op.create_index("ix_import_files_job_status", "import_files", ["job_id", "status"])


def downgrade() -> None:
    op.drop_table("import_files")
    op.drop_table("import_jobs")
    op.drop_table("video_frames")
    op.drop_table("videos")

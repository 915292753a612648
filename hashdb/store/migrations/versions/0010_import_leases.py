"""Import jobs are claimed by workers: who holds a job (`claimed_by`, host:pid:random)
and until when (`lease_until`), renewed by the holder's heartbeat. A job is `queued`
(accepted, nobody holds it), `running` (held, or held by a process whose lease has
lapsed: claimable again) or `done`; the status column is a free string, so `queued`
needs no change to it. Jobs that were `running` before keep a null lease, which
counts as lapsed: the first worker to look resumes them.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("import_jobs", sa.Column("claimed_by", sa.String(200), nullable=True))
    op.add_column(
        "import_jobs", sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index("ix_import_jobs_status", "import_jobs", ["status", "lease_until"])


def downgrade() -> None:
    op.drop_index("ix_import_jobs_status", "import_jobs")
    # A queued job becomes a running one, as an interrupted import was before: the
    # next `hashdb import` of its source resumes it.
    op.execute("UPDATE import_jobs SET status = 'running' WHERE status = 'queued'")
    # SQLite drops a column in place (3.35+); a batch copy of the table would trip
    # over import_files' foreign key.
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE import_jobs DROP COLUMN lease_until")
        op.execute("ALTER TABLE import_jobs DROP COLUMN claimed_by")
    else:
        op.drop_column("import_jobs", "lease_until")
        op.drop_column("import_jobs", "claimed_by")

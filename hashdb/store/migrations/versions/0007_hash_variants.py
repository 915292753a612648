"""Stored variants in their own table: a variant is part of its image, not a hash.

Revision 0005 kept each stored variant (hashdb/variants.py) as a `hashes` row
pointing at its image (`derived_from`, `variant`): it had an id, a status that
cascades followed, and every listing, count and feed had to leave it out. Here
they move to `hash_variants` (image id, kind, value, quality) and the two columns
go. What pointed at a derived row now points at its image: its change-log entries
(an `add` becomes an `update` of the image, so sequence numbers are kept and a
feed cursor never skips), feedback, outcomes and synced rows; its history and
match counts (it never had any of its own) are deleted.

The downgrade puts every variant back as a `hashes` row copying its image's
contributor, labels, reference, expiry and status (one `add` change each),
except a value the contributor already holds in another row, as 0005 did.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_hashes = sa.table(
    "hashes",
    sa.column("id"),
    sa.column("derived_from"),
    sa.column("variant"),
    sa.column("value"),
    sa.column("quality"),
)
_DERIVED = sa.select(_hashes.c.id).where(_hashes.c.derived_from.is_not(None))


NEW_COLUMNS = ("hash_id", "kind", "value", "quality")


def upgrade() -> None:
    op.create_table(
        "hash_variants",
        sa.Column("hash_id", sa.BigInteger, sa.ForeignKey("hashes.id"), primary_key=True),
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column("quality", sa.SmallInteger, nullable=True),
    )
    parent = _hashes.alias("parent")
    op.execute(
        sa.insert(sa.table("hash_variants", *(sa.column(c) for c in NEW_COLUMNS))).from_select(
            NEW_COLUMNS,
            sa.select(
                _hashes.c.derived_from, _hashes.c.variant, _hashes.c.value, _hashes.c.quality
            ).where(_hashes.c.derived_from.is_not(None), _hashes.c.variant.is_not(None)),
        )
    )
    changes = sa.table("changes", sa.column("hash_id"), sa.column("op"))
    op.execute(
        sa.update(changes)
        .where(changes.c.op == "add", changes.c.hash_id.in_(_DERIVED))
        .values(op="update")
    )
    for name in ("changes", "feedback", "outcomes", "synced_hashes"):
        table = sa.table(name, sa.column("hash_id"))
        image = sa.select(parent.c.derived_from).where(parent.c.id == table.c.hash_id)
        op.execute(
            sa.update(table)
            .where(table.c.hash_id.in_(_DERIVED))
            .values(hash_id=image.scalar_subquery())
        )
    for name in ("hash_transitions", "match_counts"):
        table = sa.table(name, sa.column("hash_id"))
        op.execute(sa.delete(table).where(table.c.hash_id.in_(_DERIVED)))
    op.execute(sa.delete(_hashes).where(_hashes.c.derived_from.is_not(None)))
    op.drop_index("ix_hashes_derived_from", table_name="hashes")
    if op.get_bind().dialect.name == "sqlite":
        # In place (SQLite 3.35+): Alembic would copy the table, and dropping the
        # original under the foreign keys of its children fails at commit.
        op.execute("ALTER TABLE hashes DROP COLUMN variant")
        op.execute("ALTER TABLE hashes DROP COLUMN derived_from")
    else:
        op.drop_column("hashes", "variant")
        op.drop_column("hashes", "derived_from")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.execute("ALTER TABLE hashes ADD COLUMN derived_from BIGINT REFERENCES hashes (id)")
    else:
        op.add_column(
            "hashes",
            sa.Column(
                "derived_from",
                sa.BigInteger,
                sa.ForeignKey("hashes.id", name="fk_hashes_derived_from"),
                nullable=True,
            ),
        )
    op.add_column("hashes", sa.Column("variant", sa.String(32), nullable=True))
    op.create_index("ix_hashes_derived_from", "hashes", ["derived_from"])
    meta = sa.MetaData()
    hashes = sa.Table("hashes", meta, autoload_with=bind)
    variants = sa.Table("hash_variants", meta, autoload_with=bind)
    changes = sa.Table("changes", meta, autoload_with=bind)
    held = {
        (str(t), bytes(v), int(c))
        for t, v, c in bind.execute(
            sa.select(hashes.c.signal_type, hashes.c.value, hashes.c.contributor_id)
        )
    }
    rows = bind.execute(
        sa.select(variants, hashes)
        .join(hashes, hashes.c.id == variants.c.hash_id)
        .order_by(variants.c.hash_id, variants.c.kind)
    ).all()
    for row in rows:
        v, parent = row[: len(variants.c)], row[len(variants.c) :]
        image = dict(zip(hashes.c.keys(), parent, strict=True))
        key = (image["signal_type"], bytes(v[2]), image["contributor_id"])
        if key in held:
            continue
        held.add(key)
        (new_id,) = bind.execute(
            sa.insert(hashes)
            .values(
                {
                    **{k: image[k] for k in image if k != "id"},
                    "value": v[2],
                    "quality": v[3],
                    "derived_from": image["id"],
                    "variant": v[1],
                }
            )
            .returning(hashes.c.id)
        ).one()
        bind.execute(sa.insert(changes).values(hash_id=new_id, op="add", at=image["updated_at"]))
    op.drop_table("hash_variants")

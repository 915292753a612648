"""The id space of index entries: one typed encoding for hashes, stored variants and
video frames, packed and unpacked in one module (hashdb/index/entries.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hashdb.index import entries
from hashdb.index.entries import IMAGE_LIMIT, ROW_LIMIT, Entry, EntryKind
from hashdb.variants import STORED_KINDS

rows = st.integers(0, ROW_LIMIT - 1)
images = st.integers(0, IMAGE_LIMIT - 1)
slots = st.integers(0, len(STORED_KINDS) - 1)


@given(rows)
def test_a_hash_entry_is_the_hash_id(row: int) -> None:
    (entry_id,) = entries.hashes([row]).tolist()
    assert entry_id == row
    assert entries.decode(entry_id) == Entry(EntryKind.HASH, row)


@given(rows)
def test_a_frame_entry_names_its_frame_row(row: int) -> None:
    (entry_id,) = entries.frames([row]).tolist()
    assert entry_id >= 0
    assert entries.decode(entry_id) == Entry(EntryKind.FRAME, row)


@given(images, slots)
def test_a_variant_entry_names_its_image_and_kind(image: int, slot: int) -> None:
    (entry_id,) = entries.variants([image], [slot]).tolist()
    decoded = entries.decode(entry_id)
    assert decoded == Entry(EntryKind.VARIANT, image, slot)
    assert decoded.variant == STORED_KINDS[slot]


@given(st.lists(st.tuples(st.sampled_from(list(EntryKind)), images, slots), max_size=50))
def test_kinds_never_collide_and_vectors_decode_like_scalars(
    items: list[tuple[EntryKind, int, int]],
) -> None:
    encoded = []
    for kind, row, slot in items:
        if kind is EntryKind.VARIANT:
            encoded += entries.variants([row], [slot]).tolist()
        elif kind is EntryKind.FRAME:
            encoded += entries.frames([row]).tolist()
        else:
            encoded += entries.hashes([row]).tolist()
    ids = np.array(encoded, dtype=np.int64)
    assert entries.valid(ids).all()
    assert entries.kinds_of(ids).tolist() == [int(k) for k, _, _ in items]
    assert entries.rows_of(ids).tolist() == [r for _, r, _ in items]
    expected = {(k, r, s if k is EntryKind.VARIANT else 0) for k, r, s in items}
    assert {tuple(entries.decode(i)) for i in encoded} == expected


def test_every_slot_of_an_image_is_covered_for_removal() -> None:
    every = entries.variant_slots([5, 9])
    assert len(every) == 2 * len(STORED_KINDS)
    assert set(entries.variants([5] * len(STORED_KINDS), range(len(STORED_KINDS))).tolist()) <= set(
        every.tolist()
    )


@pytest.mark.parametrize("bad", [-1, -(2**40), entries.variants([1], [0])[0] + len(STORED_KINDS)])
def test_ids_outside_the_space_are_refused(bad: int) -> None:
    assert not entries.valid(np.array([bad], dtype=np.int64))[0]
    with pytest.raises(ValueError):
        entries.decode(int(bad))


def test_rows_outside_their_range_are_refused() -> None:
    with pytest.raises(ValueError):
        entries.hashes([-1])
    with pytest.raises(ValueError):
        entries.variants([IMAGE_LIMIT], [0])
    with pytest.raises(ValueError):
        entries.variants([1], [256])
    assert entries.slot_of("crop70_0_0") is None  # a kind not stored: not indexed

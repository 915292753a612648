"""Pages of a list, the one way every list use case hands its rows out.

Every list is read in the order of a strictly increasing integer key (an id, the
audit log's seq, or, for the label taxonomy, which has no numeric key, the
label's position in creation order: labels are never deleted and a new one is
created after every other). A page is the rows whose key is above `after`, at most
`limit` of them, with:

- `cursor`: the key of the last row in the page, or `after` itself when the page is
  empty; a reader passes it back as the next page's `after`;
- `more`: whether rows follow the cursor now. The query reads `limit + 1` rows, so
  `more` is exact at the time of the read, never guessed from a full page.

Because the key only grows, a reader paging while rows are added never sees a row
twice and never misses one that existed when it started: new rows get keys above
every old one, so they come at the end. This is the export feed's contract
(`hashdb/consortium/export.py`) applied to every other list.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from hashdb.errors import InvalidInput

T = TypeVar("T")

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_KEY = 2**63 - 1  # keys are positive 64-bit integers, as the database stores them


@dataclass(frozen=True)
class Page(Generic[T]):
    """Rows in key order after the request's cursor (see the module docstring)."""

    items: list[T]
    cursor: int
    more: bool


def check_page(after: int, limit: int, max_limit: int = MAX_LIMIT) -> None:
    """InvalidInput naming the argument when `after` or `limit` is out of range."""
    if not 0 <= after <= MAX_KEY:
        raise InvalidInput(f"the cursor must be 0-{MAX_KEY}", field="cursor")
    if not 1 <= limit <= max_limit:
        raise InvalidInput(f"limit must be 1-{max_limit}", field="limit")


def page_of(rows: Sequence[T], after: int, limit: int, key: Callable[[T], int]) -> Page[T]:
    """The page from up to `limit + 1` rows read in key order after `after`."""
    items = list(rows[:limit])
    cursor = key(items[-1]) if items else after
    return Page(items, cursor, len(rows) > limit)


def page_by_position(rows: Sequence[T], after: int, limit: int) -> Page[T]:
    """The page of a list keyed by position (1 for its first row): `rows` are all of
    them, in their stable order."""
    items = list(rows[after : after + limit])
    return Page(items, after + len(items), len(rows) > after + limit)

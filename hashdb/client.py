"""The member client: a consortium server's API from Python, without hand-written HTTP.

`Client(url)` talks to a hashdb server (`hashdb serve`) as one member, over httpx:

    with Client("https://hashdb.example.org") as hashdb:   # key from the environment
        found = hashdb.match([("pdq", "f8f8...")])
        hashdb.contribute([("pdq", "f8f8...")], labels=["attack_footage"])
        for page in hashdb.follow(since=cursor): ...

The key. It is the `key` argument, else the `HASHDB_API_KEY` environment variable,
else the contents of the file named by `HASHDB_API_KEY_FILE` (surrounding blanks
stripped). `hashdb remote` and `hashdb sync` take it only from those two variables:
a key given on a command line is visible to every user of the machine in the
process list.

Retries. A request that gets no answer (connection refused or dropped, a timeout)
or a 429 or 503 answer is sent again, at most `attempts` times in all. The wait
before attempt n+1 is the answer's `Retry-After` (seconds or an HTTP date) when it
has one, else `backoff * 2**(n-1)`; never more than `max_wait`. Retrying a POST is
safe: every POST that creates something (contributions, uploads, feedback) carries
an `Idempotency-Key`, one per logical request and the same on each of its retries,
so the server answers a retry with its first answer and counts nothing twice
(api/idempotency.py). Matching changes nothing and needs none. Redirects are never
followed: the key is only sent to the URL given.

Keypoint sets (hashdb/signals/keypoints.py) travel as base64 text where other
hashes travel as hex. This module computes nothing (it knows no pixels); a member
computes the sets of a picture with `ingest.keypoints` and sends them through the
two constructors that give them their shape on the wire:

    from ingest.keypoints import keypoints, query_sets
    hashdb.contribute([Contribution.keypoints(keypoints(picture))])  # 128 keypoints
    hashdb.match([MatchQuery.keypoints(*query_sets(picture))])       # 256, and mirrored

A contribution is the set a stored picture keeps, `{"signal_type": "keypoints",
"value": BASE64}` (the server stores its digest, its keypoint count as quality, and
the set). A lookup is the picture's query set and its mirror image's, `{"signal_type":
"keypoints", "value": BASE64, "mirror": BASE64}`: ORB keypoints do not find a
mirrored copy, and the mirrored set cannot be derived from the other, so the client
sends both (a set given alone, as `hashdb remote match keypoints:...` gives it, is
sent without `mirror`). A keypoints result's `value` is the query set's SHA-256 in
hex, as a stored row's is; a keypoints match says how many keypoints verification
found in agreement (`Match.inliers`) and the share of the stored picture the query
shows (`Match.share`); it has no distance (0) and takes no threshold.

Batching. `match` and `contribute` take any number of hashes and send them in
requests of at most `max_batch` (the server's HASHDB_MAX_BATCH, 10,000 unless its
operator changed it). The server does not publish its limit except in the refusal
of a batch above it (400 `invalid_input` with `details.maximum`): the client then
adopts that maximum and sends the rest in smaller requests. Results come back as
one list in the order of the input, `index` counting over the whole input.

Results are frozen dataclasses (`MatchResult`, `Match`, `VideoMatch`, `Added`,
`MediaMatch`, `MediaContribution`, `FeedbackGiven`, `Hash`, `Label`); feed pages are
the feed's own `FeedPage` (hashdb/consortium/export.py: entries, cursor, more, epoch,
head).

Lists. Every list endpoint pages the same way (`cursor` and `limit` in, `cursor` and
`more` out; hashdb/consortium/paging.py), so one pager (`_paginate`) reads them
all: it asks for the page after the last one's `cursor` until a page says `more:
false`. The list methods (`hashes`, `labels`) are generators that yield the items
across pages, fetching a page as the caller reaches it; `follow` is the same pager
over the export feed, yielding its pages.

Errors, on the tree of hashdb.errors (so the CLI maps them to exit codes as for
every command):

    HashdbError
    ├── Unauthenticated   no key found (argument, HASHDB_API_KEY, HASHDB_API_KEY_FILE)  exit 2
    ├── InvalidInput      a bad argument (URL, hash, file) caught before sending          exit 2
    └── RemoteError       the server refused (status, code, message, details from its
                          JSON error body; exit 2 for 4xx), or gave no usable answer
                          after the last attempt (status None or 5xx; exit 3)
"""

from __future__ import annotations

import email.utils
import math
import os
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx

from hashdb.consortium.export import FeedPage
from hashdb.errors import HashdbError, InvalidInput, Unauthenticated
from hashdb.keypoints.codec import KeypointSet
from hashdb.signals import KEYPOINTS, SIGNAL_TYPES

KEY_ENV = "HASHDB_API_KEY"
KEY_FILE_ENV = "HASHDB_API_KEY_FILE"
DEFAULT_MAX_BATCH = 10_000
DEFAULT_ATTEMPTS = 5
RETRIED_STATUSES = frozenset({429, 503})
# Errors after which the request may not have reached the server, or its answer was
# lost: worth another attempt (an unsupported scheme or a bad URL is not).
_RETRIED_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)

T = TypeVar("T")
P = TypeVar("P")


class RemoteError(HashdbError):
    """The server refused a request (`status`, and `code`, `message`, `details` from its
    error body `{"error": {...}}`), or no usable answer came (`status` None, or a 5xx,
    after the last attempt)."""

    def __init__(
        self,
        status: int | None,
        code: str,
        message: str,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, **dict(details or {}))
        self.status = status
        self.code = code
        self.http_status = status or 503
        self.exit_code = 2 if status is not None and 400 <= status < 500 else 3

    def __str__(self) -> str:
        where = f"{self.status} " if self.status is not None else ""
        return f"{where}{self.code}: {self.message}"


def api_key(key: str | None = None) -> str:
    """The member's key: `key`, else $HASHDB_API_KEY, else the file $HASHDB_API_KEY_FILE
    names; Unauthenticated (exit 2) if none of them gives one."""
    if key is None:
        key = os.environ.get(KEY_ENV) or None
    if key is None and (path := os.environ.get(KEY_FILE_ENV)):
        try:
            key = Path(path).expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise Unauthenticated(
                f"cannot read the key file {path} ({KEY_FILE_ENV}): {exc}"
            ) from None
    key = (key or "").strip()
    if not key:
        raise Unauthenticated(f"no API key: set {KEY_ENV}, or {KEY_FILE_ENV} to a file holding it")
    if any(c.isspace() or not c.isprintable() for c in key):
        raise Unauthenticated("the API key holds blanks or control characters")
    return key


# ---- what goes in ---------------------------------------------------------------


@dataclass(frozen=True)
class MatchQuery:
    """One hash to look up; `value` is hex (vpdq: the frames as vPDQ text; keypoints:
    the query set as base64, `mirror` its mirror image's)."""

    signal_type: str
    value: str
    threshold: int | None = None
    quality: int | None = None
    dihedral: bool = False
    mirror: str | None = None

    @classmethod
    def keypoints(cls, query_set: KeypointSet, mirrored: KeypointSet | None = None) -> MatchQuery:
        """The lookup of a picture by its keypoints: `query_sets(picture)` of
        ingest.keypoints, the picture's set and its mirror image's (see the module
        docstring)."""
        mirror = None if mirrored is None else mirrored.to_text()
        return cls(KEYPOINTS.name, query_set.to_text(), mirror=mirror)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"signal_type": self.signal_type, "value": self.value}
        if self.threshold is not None:
            out["threshold"] = self.threshold
        if self.quality is not None:
            out["quality"] = self.quality
        if self.dihedral:
            out["dihedral"] = True
        if self.mirror is not None:
            out["mirror"] = self.mirror
        return out


@dataclass(frozen=True)
class Contribution:
    """One hash to contribute (hex value; keypoints: base64); `labels` add to those
    of the call."""

    signal_type: str
    value: str
    labels: tuple[str, ...] = ()
    quality: int | None = None
    reference: str | None = None
    # pdq only: stored variants of the image, (kind, hex, quality) each, as an upload
    # computes them (ingest/records.py); see `hashdb remote contribute --hash-only`.
    variants: tuple[tuple[str, str, int], ...] = ()

    def to_json(self, labels: Sequence[str] = (), reference: str | None = None) -> dict[str, Any]:
        """The item of `POST /v1/hashes` for it, with the call's `labels` and
        `reference` (its own reference first)."""
        given = self.reference or reference
        return {
            "signal_type": self.signal_type,
            "value": self.value,
            "labels": list(dict.fromkeys([*labels, *self.labels])),
            **({"quality": self.quality} if self.quality is not None else {}),
            **(
                {"variants": [{"kind": k, "value": v, "quality": q} for k, v, q in self.variants]}
                if self.variants
                else {}
            ),
            **({"reference": given} if given is not None else {}),
        }

    @classmethod
    def keypoints(
        cls, kps: KeypointSet, labels: Sequence[str] = (), reference: str | None = None
    ) -> Contribution:
        """The contribution of a picture's keypoint set: `keypoints(picture)` of
        ingest.keypoints, the set a stored picture keeps (the server counts its
        keypoints for the quality)."""
        return cls(KEYPOINTS.name, kps.to_text(), tuple(labels), reference=reference)


# ---- what comes back ------------------------------------------------------------


@dataclass(frozen=True)
class Via:
    probe: str | None  # the form of the query searched (a dihedral form, content, a crop)
    stored: str | None  # the stored variant hit (content region, a crop window)


@dataclass(frozen=True)
class Match:
    id: int
    distance: int
    labels: tuple[str, ...]
    status: str
    via: Via | None  # None: the query as sent hit the hash itself
    added_at: datetime
    # Keypoints matches only: the keypoints verification found in agreement, and the
    # share of the stored picture's area the query shows.
    inliers: int | None = None
    share: float | None = None


@dataclass(frozen=True)
class VideoMatch:
    id: int
    labels: tuple[str, ...]
    status: str
    query_share: float
    reference_share: float
    offset: float | None


@dataclass(frozen=True)
class MatchResult:
    index: int  # position of the query in the call's input
    signal_type: str
    value: str
    low_quality: bool
    matches: tuple[Match, ...]
    videos: tuple[VideoMatch, ...]  # vpdq queries only


@dataclass(frozen=True)
class Added:
    index: int  # position of the hash in the call's input
    signal_type: str
    id: int
    created: bool  # False: this member had already contributed it


@dataclass(frozen=True)
class MediaMatch:
    kind: str  # image or video
    hashes: Mapping[str, Any]  # what the server computed from the file
    results: tuple[MatchResult, ...]
    videos: tuple[VideoMatch, ...]


@dataclass(frozen=True)
class MediaContribution:
    kind: str
    hashes: Mapping[str, Any]
    added: tuple[Added, ...]
    low_quality: bool  # only the file's digests were added


@dataclass(frozen=True)
class FeedbackGiven:
    id: int
    hash_id: int
    kind: str
    disagreeing_members: int
    disputed: bool  # this feedback moved the hash to disputed


@dataclass(frozen=True)
class Hash:
    """One of the member's own hashes, as `GET /v1/hashes` lists it."""

    id: int
    signal_type: str
    value: str
    quality: int | None
    labels: tuple[str, ...]
    status: str
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    reference: str | None


@dataclass(frozen=True)
class Label:
    """A label of the consortium's taxonomy."""

    name: str
    description: str
    value_kind: str  # none, optional or required: whether `name:value` is
    deprecated: bool


def _takes_threshold(signal_type: str) -> bool:
    """Whether a threshold means anything to `signal_type` (an unknown name is sent
    as given, for the server to judge)."""
    known = SIGNAL_TYPES.get(signal_type)
    return known is None or known.max_threshold > 0


def _time(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


def _hash(data: Mapping[str, Any]) -> Hash:
    return Hash(
        id=int(data["id"]),
        signal_type=str(data["signal_type"]),
        value=str(data["value"]),
        quality=None if data.get("quality") is None else int(data["quality"]),
        labels=tuple(str(x) for x in data["labels"]),
        status=str(data["status"]),
        created_at=datetime.fromisoformat(data["created_at"]),
        updated_at=datetime.fromisoformat(data["updated_at"]),
        expires_at=_time(data.get("expires_at")),
        reference=data.get("reference"),
    )


def _label(data: Mapping[str, Any]) -> Label:
    return Label(
        name=str(data["name"]),
        description=str(data["description"]),
        value_kind=str(data["value_kind"]),
        deprecated=data.get("deprecated_at") is not None,
    )


def _paginate(
    cursor: int, fetch: Callable[[int], P], position: Callable[[P], tuple[int, bool]]
) -> Iterator[P]:
    """Pages from the one after `cursor` on: each fetched at the previous page's cursor,
    until one says there is no more (`position` reads a page's cursor and more). A
    server whose cursor does not move forward while saying more is a RemoteError, not
    an endless loop."""
    while True:
        page = fetch(cursor)
        yield page
        after, more = position(page)
        if not more:
            return
        if after <= cursor:
            raise RemoteError(200, "malformed_answer", f"the cursor did not advance past {cursor}")
        cursor = after


def _page_position(data: Mapping[str, Any]) -> tuple[int, bool]:
    with _reading():
        return int(data["cursor"]), bool(data["more"])


def _via(data: Mapping[str, Any] | None) -> Via | None:
    return None if data is None else Via(data.get("probe"), data.get("stored"))


def _video(data: Mapping[str, Any]) -> VideoMatch:
    return VideoMatch(
        id=int(data["id"]),
        labels=tuple(data["labels"]),
        status=str(data["status"]),
        query_share=float(data["query_share"]),
        reference_share=float(data["reference_share"]),
        offset=None if data.get("offset") is None else float(data["offset"]),
    )


def _result(data: Mapping[str, Any], offset: int = 0) -> MatchResult:
    return MatchResult(
        index=int(data["index"]) + offset,
        signal_type=str(data["signal_type"]),
        value=str(data["value"]),
        low_quality=bool(data["low_quality"]),
        matches=tuple(
            Match(
                id=int(m["id"]),
                distance=int(m["distance"]),
                labels=tuple(m["labels"]),
                status=str(m["status"]),
                via=_via(m.get("via")),
                added_at=datetime.fromisoformat(m["added_at"]),
                inliers=None if m.get("inliers") is None else int(m["inliers"]),
                share=None if m.get("share") is None else float(m["share"]),
            )
            for m in data["matches"]
        ),
        videos=tuple(_video(v) for v in data.get("videos") or ()),
    )


def _added(data: Mapping[str, Any], offset: int = 0) -> Added:
    return Added(
        int(data["index"]) + offset, str(data["signal_type"]), int(data["id"]), data["created"]
    )


# ---- the client -------------------------------------------------------------------


class Client:
    """One member's connection to a hashdb server at `url` (see the module docstring)."""

    def __init__(
        self,
        url: str,
        key: str | None = None,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        attempts: int = DEFAULT_ATTEMPTS,
        backoff: float = 0.5,
        max_wait: float = 60.0,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise InvalidInput(f"the server URL must be http(s)://host[:port], not {url!r}")
        if max_batch < 1 or attempts < 1:
            raise InvalidInput("max_batch and attempts must be at least 1")
        self.url = url.rstrip("/")
        self.max_batch = max_batch
        self._attempts = attempts
        self._backoff = backoff
        self._max_wait = max_wait
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {api_key(key)}", "Accept": "application/json"},
            timeout=timeout,
            follow_redirects=False,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- matching ---------------------------------------------------------------

    def match(
        self,
        hashes: Sequence[tuple[str, str] | MatchQuery],
        threshold: int | None = None,
    ) -> list[MatchResult]:
        """Look up each hash, `(signal_type, hex)` or a `MatchQuery`; one result per hash,
        in order. `threshold` applies to the hashes that do not set their own, of the
        types that take one (not digests, not keypoint sets)."""
        queries = [q if isinstance(q, MatchQuery) else MatchQuery(q[0], q[1]) for q in hashes]
        if threshold is not None:
            queries = [
                replace(q, threshold=threshold)
                if q.threshold is None and _takes_threshold(q.signal_type)
                else q
                for q in queries
            ]
        return self._batched(
            queries,
            "queries",
            lambda chunk, _key: self._post(
                "/v1/match", json={"queries": [q.to_json() for q in chunk]}
            )["results"],
            _result,
            idempotent=False,
        )

    def match_media(self, path: str | Path) -> MediaMatch:
        """Upload an image or a video for the server to hash and match."""
        data = self._post("/v1/match/media", files=_file(path))
        with _reading():
            return MediaMatch(
                kind=str(data.get("kind", "image")),
                hashes=data["hashes"],
                results=tuple(_result(r) for r in data["results"]),
                videos=tuple(_video(v) for v in data.get("videos") or ()),
            )

    # ---- contributing -----------------------------------------------------------

    def contribute(
        self,
        hashes: Sequence[tuple[str, str] | Contribution],
        labels: Sequence[str] = (),
        reference: str | None = None,
    ) -> list[Added]:
        """Contribute each hash, `(signal_type, hex)` or a `Contribution`, with `labels`
        (and `reference`); one `Added` per hash, in order."""
        items = [h if isinstance(h, Contribution) else Contribution(h[0], h[1]) for h in hashes]
        body = [h.to_json(labels, reference) for h in items]
        return self._batched(
            body,
            "hashes",
            lambda chunk, key: self._post("/v1/hashes", json={"hashes": chunk}, key=key)["hashes"],
            _added,
            idempotent=True,
        )

    def contribute_media(
        self, path: str | Path, labels: Sequence[str] = (), reference: str | None = None
    ) -> MediaContribution:
        """Upload an image or a video for the server to hash and add (with its variants)."""
        form: dict[str, Any] = {"labels": list(labels)}
        if reference is not None:
            form["reference"] = reference
        data = self._post("/v1/media", files=_file(path), data=form, key=_new_key())
        with _reading():
            return MediaContribution(
                kind=str(data.get("kind", "image")),
                hashes=data["hashes"],
                added=tuple(_added(a) for a in data["added"]),
                low_quality=bool(data["low_quality"]),
            )

    # ---- feedback -----------------------------------------------------------------

    def feedback(
        self,
        hash_id: int,
        kind: str,
        *,
        reason: str | None = None,
        content: tuple[str, str] | None = None,
        note: str | None = None,
    ) -> FeedbackGiven:
        """Say whether a match was right: `agree`, `disagree` (with `reason`) or
        `false_positive` (with `content`, the `(signal_type, hex)` that matched wrongly)."""
        body: dict[str, Any] = {"kind": kind}
        if reason is not None:
            body["reason"] = reason
        if content is not None:
            body["content"] = {"signal_type": content[0], "value": content[1]}
        if note is not None:
            body["note"] = note
        data = self._post(f"/v1/hashes/{int(hash_id)}/feedback", json=body, key=_new_key())
        with _reading():
            given = data["feedback"]
            return FeedbackGiven(
                id=int(given["id"]),
                hash_id=int(given["hash_id"]),
                kind=str(given["kind"]),
                disagreeing_members=int(data["disagreeing_members"]),
                disputed=bool(data["disputed"]),
            )

    # ---- lists ----------------------------------------------------------------------

    def hashes(self, status: str | None = None, *, limit: int = 100) -> Iterator[Hash]:
        """The member's own hashes (in every status, or only `status`), oldest first,
        read `limit` at a time as the caller iterates."""
        params = [] if status is None else [("status", status)]
        return self._items("/v1/hashes", "hashes", _hash, params, limit)

    def labels(self, *, limit: int = 100) -> Iterator[Label]:
        """The label taxonomy, in creation order (deprecated labels too)."""
        return self._items("/v1/labels", "labels", _label, [], limit)

    def _items(
        self,
        path: str,
        field: str,
        parse: Callable[[Mapping[str, Any]], T],
        params: Sequence[tuple[str, str | int]],
        limit: int,
    ) -> Iterator[T]:
        """Every item of a list endpoint, across its pages (`_paginate`)."""

        def fetch(cursor: int) -> Any:
            query = [*params, ("cursor", cursor), ("limit", limit)]
            return self._send("GET", path, params=query)

        for page in _paginate(0, fetch, _page_position):
            with _reading():
                items = [parse(item) for item in page[field]]
            yield from items

    # ---- the export feed --------------------------------------------------------

    def export(
        self,
        since: int = 0,
        limit: int = 1000,
        *,
        labels: Sequence[str] = (),
        signal_types: Sequence[str] = (),
    ) -> FeedPage:
        """One page of the feed after cursor `since` (hashdb/consortium/export.py),
        reporting `since` as this follower's cursor (X-Hashdb-Follower-Cursor)."""
        params: list[tuple[str, str | int]] = [
            ("since", since),
            ("limit", limit),
            ("format", "json"),
        ]
        params += [("label", label) for label in labels]
        params += [("signal_type", s) for s in signal_types]
        # `since` is where the follower's copy stands: the server shows its lag.
        headers = {"X-Hashdb-Follower-Cursor": str(since)}
        data = self._send("GET", "/v1/export", params=params, headers=headers)
        try:
            return FeedPage.from_json(data)
        except InvalidInput as exc:
            raise RemoteError(200, "malformed_answer", exc.message) from None

    def follow(
        self,
        since: int = 0,
        limit: int = 1000,
        *,
        labels: Sequence[str] = (),
        signal_types: Sequence[str] = (),
    ) -> Iterator[FeedPage]:
        """Pages from `since` on, each resuming at the last one's cursor, until one says
        there is no more (an empty page may still say more). The caller checks each
        page's `epoch` against the one its cursor was read in."""

        def fetch(cursor: int) -> FeedPage:
            return self.export(cursor, limit, labels=labels, signal_types=signal_types)

        return _paginate(since, fetch, lambda page: (page.cursor, page.more))

    # ---- the wire -------------------------------------------------------------------

    def _batched(
        self,
        items: Sequence[T],
        field: str,
        send: Callable[[Sequence[T], str | None], list[dict[str, Any]]],
        parse: Callable[[Mapping[str, Any], int], Any],
        *,
        idempotent: bool,
    ) -> list[Any]:
        """Send `items` in requests of at most `max_batch`, adopting a smaller maximum
        if the server refuses a batch for its size; results in input order."""
        call = uuid.uuid4().hex
        out: list[Any] = []
        start = 0
        while start < len(items):
            end = min(len(items), start + self.max_batch)
            key = f"{call}.{start}.{end}" if idempotent else None
            try:
                answers = send(items[start:end], key)
            except RemoteError as exc:
                maximum = exc.details.get("maximum")
                too_big = exc.code == "invalid_input" and exc.details.get("field") == field
                if too_big and isinstance(maximum, int) and 1 <= maximum < end - start:
                    self.max_batch = maximum
                    continue
                raise
            with _reading():
                out.extend(parse(a, start) for a in answers)
            start = end
        return out

    def _post(
        self,
        path: str,
        *,
        json: Any = None,
        files: Mapping[str, tuple[str, bytes]] | None = None,
        data: Mapping[str, Any] | None = None,
        key: str | None = None,
    ) -> Any:
        headers = {"Idempotency-Key": key} if key is not None else None
        return self._send("POST", path, json=json, files=files, data=data, headers=headers)

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        """One logical request, retried as the module docstring says; the JSON answer."""
        for attempt in range(1, self._attempts + 1):
            last = attempt == self._attempts
            try:
                response = self._http.request(method, path, **kwargs)
            except _RETRIED_ERRORS as exc:
                if last:
                    raise RemoteError(
                        None, "unreachable", f"no answer from {self.url}: {exc}"
                    ) from None
                self._sleep(self._wait(attempt, None))
                continue
            except httpx.HTTPError as exc:
                raise RemoteError(None, "unreachable", f"cannot ask {self.url}: {exc}") from None
            if response.status_code in RETRIED_STATUSES and not last:
                self._sleep(self._wait(attempt, response.headers.get("Retry-After")))
                continue
            return _answer(response)
        raise AssertionError("unreachable")  # pragma: no cover (the last attempt returns)

    def _wait(self, attempt: int, retry_after: str | None) -> float:
        told = _retry_after(retry_after)
        wait = told if told is not None else self._backoff * 2 ** (attempt - 1)
        return max(0.0, min(wait, self._max_wait))


@contextmanager
def _reading() -> Iterator[None]:
    """Turn a success answer that lacks what it should hold into a RemoteError."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RemoteError(200, "malformed_answer", f"unexpected answer: {exc!r}") from None


def _new_key() -> str:
    return uuid.uuid4().hex


def _file(path: str | Path) -> dict[str, tuple[str, bytes]]:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {p}: {exc.strerror or exc}", field="file") from None
    return {"file": (p.name, data)}


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _answer(response: httpx.Response) -> Any:
    """The JSON body of a 2xx answer, or the RemoteError its error body describes."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.is_success:
        if body is None:
            raise RemoteError(
                response.status_code, "malformed_answer", "the server's answer is not JSON"
            )
        return body
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        details = error.get("details")
        raise RemoteError(
            response.status_code,
            str(error.get("code", "error")),
            str(error.get("message", "")),
            details if isinstance(details, dict) else None,
        )
    raise RemoteError(
        response.status_code,
        "http_error",
        f"the server answered {response.status_code} {response.reason_phrase}",
    )

"""A python-threatexchange extension: follow a hashdb consortium's export feed.

python-threatexchange (pytx, `threatexchange` on PyPI, the library behind the
`threatexchange` CLI and Hasher-Matcher-Actioner 2.0) fetches hashes from
"signal exchanges" through one interface, `SignalExchangeAPI`. This module makes
a hashdb server one of them, so that a platform that already runs pytx or HMA
matches against the consortium's list without writing HTTP by hand:

    threatexchange config extensions add hashdb.pytx
    threatexchange config collab edit hashdb consortium --create \\
        --server https://hashdb.example.org
    HASHDB_API_KEY=... threatexchange fetch
    threatexchange match photo upload.jpg

What the exchange does (`HashdbSignalExchangeAPI`):

- `fetch_iter` follows `GET <server>/v1/export?since=<cursor>&format=jsonl` with
  the member's Bearer key, one delta per page, keyed by hashdb's hash id. An
  `add`/`update` entry becomes a `HashdbSignalMetadata` (the value, the hash's
  labels as pytx tags and its status as pytx opinions); a `delete` entry (a
  tombstone: the hash was retired, rejected or expired) removes the key. The
  checkpoint is the feed's cursor plus its epoch (`HashdbCheckpoint`).
- The page protocol is read defensively: the cursor and whether more pages follow
  come from the `X-Hashdb-Cursor` and `X-Hashdb-More` headers when the server
  sends them (a page may be empty and still not the end: it held only internal
  changes); without them the cursor is the last entry's `seq` and an empty page is
  the end. A server that says "more" without moving the cursor is an error, never
  an endless loop.
- The epoch (`X-Hashdb-Epoch`, or an entry's `epoch` field) names the server's
  history. When it changes (the database was restored from a backup, a standby
  promoted) or the server's cursor or head (`X-Hashdb-Head`) is behind ours,
  sequence numbers were reused:
  the follower first deletes every id it may hold (ids 1 to the highest it was
  ever sent, in bounded chunks whose checkpoints keep the old epoch, so that an
  interrupted purge resumes) and then replays the feed from zero.

Status as opinion, in pytx's model (`SignalOpinionCategory`): an `active` hash is
one `POSITIVE_CLASS` opinion tagged with its labels (vetted: the content fits the
consortium's categories); a `disputed` hash adds a `NEGATIVE_CLASS` opinion (enough
members said it matches content that does not belong), so pytx aggregates it to
`DISPUTED` and `threatexchange match --hide-disputed` hides it. Any other status
the feed might carry becomes `INVESTIGATION_SEED`. Two hashdb hashes of one value
(two contributors) are merged for matching: the metadata lists both.

Signal types: hashdb's `pdq` is pytx's `PdqSignal` (the same 256-bit PDQ as 64
hex digits). hashdb's `md5` is deliberately not mapped to pytx's `VideoMD5Signal`:
ours digests the bytes of any uploaded file (images too), pytx's applies to video
content only, so an image's MD5 would be indexed under video and never match a
photo. Other types (vpdq digests, pHash, SHA-256, ...) have no pytx counterpart and
are skipped.

Opinions are not reported back (`report_opinion` stays pytx's "not supported"):
pytx hands it only a signal's value, while hashdb's feedback is about a hash id,
and finding the id would take a match query, which hashdb counts as a match in its
transparency figures. Neither pytx's CLI (its `label` command is a stub) nor HMA
2.0 calls it; members give feedback through hashdb's API.

The key never travels on a command line: it comes from the credentials pytx or HMA
hand to `for_collab` (HMA stores them per exchange API), else the collaboration's
`key_file`, else the `HASHDB_API_KEY` environment variable, else the file
`~/.hashdb_api_key`. Only http(s) server URLs are accepted and redirects are never
followed, so the key is only ever sent to the server configured.

This module imports nothing heavy from hashdb (pytx loads it on every command):
the wire format of the feed (`hashdb.consortium.export`) is the contract.
"""

import json
import logging
import typing as t
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from threatexchange.exchanges import auth
from threatexchange.exchanges import fetch_state as state
from threatexchange.exchanges.collab_config import CollaborationConfigWithDefaults
from threatexchange.exchanges.signal_exchange_api import SignalExchangeAPI
from threatexchange.extensions.manifest import ThreatExchangeExtensionManifest
from threatexchange.signal_type.pdq.signal import PdqSignal
from threatexchange.signal_type.signal_base import SignalType

log = logging.getLogger(__name__)

API_NAME = "hashdb"
KEY_ENV = "HASHDB_API_KEY"
KEY_FILE = "~/.hashdb_api_key"
DEFAULT_PAGE = 1000
MAX_PAGE = 10_000  # the server's largest `limit`
PURGE_CHUNK = 10_000  # ids deleted per delta when the feed's history changed
TIMEOUT_S = 60.0

# hashdb signal type name -> pytx signal type (see the module docstring for md5).
PYTX_TYPES: Mapping[str, type[SignalType]] = {"pdq": PdqSignal}


class HashdbFeedError(Exception):
    """The server could not be read, or answered something that is not the feed."""


@dataclass
class HashdbCredentials(auth.CredentialHelper):
    """A member's API key for the consortium server."""

    ENV_VARIABLE: t.ClassVar[str] = KEY_ENV
    FILE_NAME: t.ClassVar[str] = KEY_FILE

    api_key: str = field(metadata={"help": "the member's hashdb API key (Bearer)"})

    @classmethod
    def _from_str(cls, s: str) -> "HashdbCredentials":
        return cls(s.strip())

    def _are_valid(self) -> bool:
        return bool(self.api_key) and not any(c.isspace() for c in self.api_key)


@dataclass
class _HashdbCollabRequired:
    server: str = field(
        metadata={
            "help": "the consortium server's base URL, e.g. https://hashdb.example.org",
            "metavar": "URL",
        }
    )


@dataclass
class HashdbCollabConfig(CollaborationConfigWithDefaults, _HashdbCollabRequired):
    """A collaboration: which hashdb server to follow (the key is not stored here)."""

    # t.Optional, not `str | None`: pytx's CLI builds its flags from these types.
    key_file: t.Optional[str] = field(  # noqa: UP045
        default=None,
        metadata={
            "help": f"a file holding the member's API key (else ${KEY_ENV}, else {KEY_FILE})",
            "metavar": "PATH",
        },
    )
    page_size: int = field(
        default=DEFAULT_PAGE,
        metadata={"help": f"feed entries per request (1-{MAX_PAGE})", "metavar": "N"},
    )


@dataclass
class HashdbCheckpoint(state.FetchCheckpointBase):
    """Where the follower stands: the feed's cursor in the history named `epoch`."""

    cursor: int = 0
    epoch: t.Optional[str] = None  # noqa: UP045 (as above); None until the server names it
    high_id: int = 0  # the highest hash id ever fetched: what a purge must delete


@dataclass(frozen=True)
class HashdbHash:
    """One hash of the consortium's list, as the feed described it."""

    id: int
    status: str
    labels: tuple[str, ...] = ()

    def opinions(self) -> list[state.SignalOpinion]:
        tags = set(self.labels)
        if self.status == "active":
            return [state.SignalOpinion(False, state.SignalOpinionCategory.POSITIVE_CLASS, tags)]
        if self.status == "disputed":
            return [
                state.SignalOpinion(False, state.SignalOpinionCategory.POSITIVE_CLASS, tags),
                state.SignalOpinion(False, state.SignalOpinionCategory.NEGATIVE_CLASS, set()),
            ]
        return [state.SignalOpinion(False, state.SignalOpinionCategory.INVESTIGATION_SEED, tags)]


@dataclass
class HashdbSignalMetadata(state.FetchedSignalMetadata):
    """A fetched signal: its pytx type name, value and the hashdb hash(es) behind it."""

    signal_type: str
    value: str
    hashes: tuple[HashdbHash, ...]

    def get_as_opinions(self) -> t.Sequence[state.SignalOpinion]:
        return [o for h in self.hashes for o in h.opinions()]

    def __str__(self) -> str:
        agg = self.get_as_aggregate_opinion()
        ids = ",".join(str(h.id) for h in self.hashes)
        parts = [agg.category.name, ",".join(sorted(agg.tags)), f"hashdb_id={ids}"]
        return " ".join(p for p in parts if p)


@dataclass(frozen=True)
class FeedPage:
    """One answer of the export feed, the protocol already resolved."""

    entries: list[dict[str, t.Any]]
    cursor: int  # resume after this
    more: bool  # another page may follow at once
    epoch: str | None  # the server's history, if it names one
    head: int | None = None  # the server's last sequence number, if it says


def _header_bool(value: str | None) -> bool | None:
    if value is None:
        return None
    return value.strip().lower() in ("true", "1", "yes")


def parse_page(body: str, headers: Mapping[str, str], since: int) -> FeedPage:
    """Read one JSONL answer: headers when present, else the entries themselves."""
    entries: list[dict[str, t.Any]] = []
    for n, line in enumerate(body.splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise HashdbFeedError(f"feed line {n} is not JSON: {exc.msg}") from None
        if not isinstance(data, dict) or not isinstance(data.get("id"), int):
            raise HashdbFeedError(f"feed line {n} is not a feed entry")
        entries.append(data)
    try:
        raw_cursor = headers.get("X-Hashdb-Cursor")
        if raw_cursor is not None:
            cursor = int(raw_cursor)
        else:
            cursor = int(entries[-1]["seq"]) if entries else since
    except (KeyError, TypeError, ValueError):
        raise HashdbFeedError("the feed's cursor is not a number") from None
    more = _header_bool(headers.get("X-Hashdb-More"))
    epoch = headers.get("X-Hashdb-Epoch")
    if epoch is None:
        epoch = next((str(e["epoch"]) for e in entries if e.get("epoch") is not None), None)
    try:
        raw_head = headers.get("X-Hashdb-Head")
        head = None if raw_head is None else int(raw_head)
    except ValueError:
        raise HashdbFeedError("the feed's head is not a number") from None
    return FeedPage(entries, cursor, bool(entries) if more is None else more, epoch, head)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # urllib then raises HTTPError for the 3xx answer


class HttpFeed:
    """The export feed of the hashdb server at `server`, read with `key`."""

    def __init__(self, server: str, key: str, *, timeout: float = TIMEOUT_S) -> None:
        self.server = server.rstrip("/")
        self._key = key
        self._timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirects)

    def page(self, since: int, limit: int) -> FeedPage:
        query = urllib.parse.urlencode({"since": since, "limit": limit, "format": "jsonl"})
        request = urllib.request.Request(  # noqa: S310 (scheme checked by for_collab)
            f"{self.server}/v1/export?{query}",
            headers={"Authorization": f"Bearer {self._key}", "Accept": "application/x-ndjson"},
        )
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                body = response.read().decode("utf-8")
                headers = {k: v for k, v in response.headers.items()}
        except urllib.error.HTTPError as exc:
            exc.close()  # the error holds the open answer; release its socket now
            if exc.code in (401, 403):
                raise auth.SignalExchangeAPIInvalidAuthException(
                    HashdbSignalExchangeAPI, f"{self.server} refused the key ({exc.code})"
                ) from None
            raise HashdbFeedError(f"{self.server} answered {exc.code}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise HashdbFeedError(f"cannot reach {self.server}: {exc}") from None
        except UnicodeDecodeError:
            raise HashdbFeedError(f"{self.server} answered something that is not text") from None
        return parse_page(body, headers, since)


class FeedSource(t.Protocol):
    """Where pages of the export feed come from (`HttpFeed`)."""

    def page(self, since: int, limit: int) -> FeedPage: ...


_Delta = state.FetchDelta[int, HashdbSignalMetadata, HashdbCheckpoint]


def _record(entry: Mapping[str, t.Any], wanted: set[str]) -> HashdbSignalMetadata | None:
    """The metadata for a live entry, or None if pytx cannot use it."""
    pytx_type = PYTX_TYPES.get(str(entry.get("signal_type")))
    if pytx_type is None or pytx_type.get_name() not in wanted:
        return None
    try:
        value = pytx_type.validate_signal_str(str(entry.get("value")))
    except ValueError:
        log.warning("hashdb id %s: invalid %s value, dropped", entry["id"], pytx_type.get_name())
        return None
    labels = tuple(str(x) for x in entry.get("labels") or ())
    return HashdbSignalMetadata(
        pytx_type.get_name(),
        value,
        (HashdbHash(int(entry["id"]), str(entry.get("status")), labels),),
    )


class HashdbSignalExchangeAPI(
    auth.SignalExchangeWithAuth[HashdbCollabConfig, HashdbCredentials],
    SignalExchangeAPI[
        HashdbCollabConfig, HashdbCheckpoint, HashdbSignalMetadata, int, HashdbSignalMetadata
    ],
):
    """A hashdb consortium as a pytx signal exchange (see the module docstring)."""

    def __init__(self, collab: HashdbCollabConfig, feed: FeedSource) -> None:
        self.collab = collab
        self.feed = feed

    @classmethod
    def get_name(cls) -> str:
        return API_NAME

    @staticmethod
    def get_config_cls() -> type[HashdbCollabConfig]:
        return HashdbCollabConfig

    @staticmethod
    def get_checkpoint_cls() -> type[HashdbCheckpoint]:
        return HashdbCheckpoint

    @staticmethod
    def get_record_cls() -> type[HashdbSignalMetadata]:
        return HashdbSignalMetadata

    @staticmethod
    def get_credential_cls() -> type[HashdbCredentials]:
        return HashdbCredentials

    @classmethod
    def for_collab(
        cls, collab: HashdbCollabConfig, credentials: HashdbCredentials | None = None
    ) -> "HashdbSignalExchangeAPI":
        parsed = urllib.parse.urlsplit(collab.server)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise auth.SignalExchangeAPIInvalidAuthException(
                cls, f"server must be an http(s)://host[:port] URL, not {collab.server!r}"
            )
        if not 1 <= collab.page_size <= MAX_PAGE:
            raise auth.SignalExchangeAPIInvalidAuthException(
                cls, f"page_size must be 1-{MAX_PAGE}, not {collab.page_size}"
            )
        if credentials is None and collab.key_file and HashdbCredentials._DEFAULT is None:
            credentials = cls._key_from_file(Path(collab.key_file).expanduser())
        if credentials is None:
            credentials = HashdbCredentials.get(cls)
        return cls(collab, HttpFeed(collab.server, credentials.api_key))

    @classmethod
    def _key_from_file(cls, path: Path) -> HashdbCredentials:
        try:
            creds = HashdbCredentials._from_str(path.read_text())
        except (OSError, UnicodeDecodeError) as exc:
            raise auth.SignalExchangeAPIInvalidAuthException(
                cls, f"cannot read the key file {path}: {exc}"
            ) from None
        if not creds._are_valid():
            raise auth.SignalExchangeAPIInvalidAuthException(
                cls, f"the key file {path} holds no valid key"
            )
        return creds

    @classmethod
    def naive_convert_to_signal_type(
        cls,
        signal_types: Sequence[type[SignalType]],
        collab: HashdbCollabConfig,
        fetched: Mapping[int, HashdbSignalMetadata],
    ) -> dict[type[SignalType], dict[str, HashdbSignalMetadata]]:
        by_name = {s.get_name(): s for s in signal_types}
        out: dict[type[SignalType], dict[str, HashdbSignalMetadata]] = {}
        for _, record in sorted(fetched.items()):
            s_type = by_name.get(record.signal_type)
            if s_type is None:
                continue
            held = out.setdefault(s_type, {})
            same = held.get(record.value)
            held[record.value] = (
                record if same is None else replace(same, hashes=same.hashes + record.hashes)
            )
        return out

    def fetch_iter(
        self,
        supported_signal_types: Sequence[type[SignalType]],
        checkpoint: HashdbCheckpoint | None,
    ) -> Iterator[_Delta]:
        wanted = {s.get_name() for s in supported_signal_types}
        at = checkpoint or HashdbCheckpoint()
        last = checkpoint
        resynced = False
        while True:
            page = self.feed.page(at.cursor, self.collab.page_size)
            new_history = page.epoch is not None and at.epoch not in (None, page.epoch)
            behind = page.cursor < at.cursor or (page.head is not None and page.head < at.cursor)
            if new_history or behind:
                if resynced:  # e.g. two databases behind one address: never loop
                    raise HashdbFeedError("the feed's history changed twice in one fetch")
                resynced = True
                log.warning("%s: the feed's history changed; resyncing", self.collab.name)
                yield from self._purge(at, page.epoch)
                at = last = HashdbCheckpoint(0, page.epoch, 0)
                continue
            updates: dict[int, HashdbSignalMetadata | None] = {}
            high = at.high_id
            for entry in page.entries:
                hash_id = int(entry["id"])
                high = max(high, hash_id)
                live = entry.get("op") in ("add", "update")
                updates[hash_id] = _record(entry, wanted) if live else None
            if page.more and page.cursor <= at.cursor:
                raise HashdbFeedError(
                    f"the feed says more follows but its cursor stays at {page.cursor}"
                )
            at = HashdbCheckpoint(page.cursor, page.epoch or at.epoch, high)
            if updates or at != last:
                yield state.FetchDelta(updates, at)
                last = at
            if not page.more:
                return

    @staticmethod
    def _purge(at: HashdbCheckpoint, epoch: str | None) -> Iterator[_Delta]:
        """Delete ids at.high_id down to 1; the last delta starts the new history."""
        top = at.high_id
        while top > PURGE_CHUNK:
            bottom = top - PURGE_CHUNK
            gone: dict[int, HashdbSignalMetadata | None] = dict.fromkeys(range(bottom + 1, top + 1))
            yield state.FetchDelta(gone, replace(at, high_id=bottom))
            top = bottom
        last: dict[int, HashdbSignalMetadata | None] = dict.fromkeys(range(1, top + 1))
        yield state.FetchDelta(last, HashdbCheckpoint(0, epoch, 0))


TX_MANIFEST = ThreatExchangeExtensionManifest(apis=(HashdbSignalExchangeAPI,))

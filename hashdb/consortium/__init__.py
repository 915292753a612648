"""The consortium layer: the one door through which every edge changes or reads the list.

The edges (the HTTP API, the console, the CLI, bulk import and sync) hold one
`Consortium` and call its use cases; none of them imports `hashdb.store`,
`hashdb.matching` or `hashdb.index` (an import-linter contract in pyproject.toml,
run by `make lint`). A use case takes the acting `Actor`, checks the rules (role,
taxonomy, visibility, quality floor, rate budget where it applies), writes, appends
the change log and the audit entry in one transaction, and returns typed results
or raises the errors of `hashdb.errors`, so every edge refuses the same way.

One module per job, each owning its tables (declared in hashdb/store/schema.py):

    core           `Consortium`: settings, store and matcher wired together, and the
                   use cases every edge calls
    actor          who is acting (member, key, valid request id) and the admin check
    members        members and keys (admins, audited), authentication, console logins
    labels         the label taxonomy admins manage; contributions must use it
    contributions  admitting a batch: quality floor, labels checked, status chosen,
                   history, audit
    hashes         reading hashes (by id, a member's own, the review queue), and
                   who may see or address which
    vetting        the status lifecycle: approve, reject, dispute, resolve, retire,
                   expire; every move recorded with who, when and why
    incidents      crisis mode: contributions tagged with an open incident go live
    feedback       agree / disagree / false_positive; disagreement disputes a hash
    outcomes       what a member did with a match, and how fast
    matching       lookups: capped, priced, charged to the key, answered, counted;
                   the indexes' lifecycle for a serving process
    ratelimit      the per-key buckets: requests, and index work in query units
    match_counts   matches answered, per member, hash (and so label), per hour
    audit          the append-only, hash-chained audit log
    export         the change log as a feed of additions, updates and tombstones
    sync           a local copy that follows a central hashdb's feed over HTTP
    reports        the transparency report
    imports        bulk imports: jobs and files, each file admitted as a contribution;
                   queued jobs claimed by workers under a renewed lease
    upkeep         the worker's chores: expiry, index snapshots
    idempotency    a retried create (same Idempotency-Key) answered from the first

This package re-exports the value types the edges pass in and get back (members,
keys, hash records, queries and matches), so that an edge needs nothing else from
`hashdb` besides signals, settings and errors.
"""

from hashdb.consortium.actor import Actor
from hashdb.consortium.core import Consortium
from hashdb.consortium.imports import Claim
from hashdb.consortium.matching import Answer, VideoQuery
from hashdb.consortium.ratelimit import OutOfRequests, Quota
from hashdb.matching import Match, Probe, Query, QueryResult, Via, VideoMatch
from hashdb.store import (
    MATCHABLE,
    MAX_KEYFRAMES,
    Added,
    ApiKey,
    FileState,
    HashRecord,
    Heads,
    ImportFile,
    ImportJob,
    JobStatus,
    Keyframe,
    Member,
    NewHash,
    NewKey,
    NewVideo,
    PlannedFile,
    Principal,
    Role,
    Status,
)
from hashdb.store.clock import now, utc
from hashdb.store.hashes import NewVariant

__all__ = [
    "MATCHABLE",
    "MAX_KEYFRAMES",
    "Actor",
    "Added",
    "Answer",
    "ApiKey",
    "Claim",
    "Consortium",
    "FileState",
    "HashRecord",
    "Heads",
    "ImportFile",
    "ImportJob",
    "JobStatus",
    "Keyframe",
    "Match",
    "Member",
    "NewHash",
    "NewKey",
    "NewVariant",
    "NewVideo",
    "OutOfRequests",
    "PlannedFile",
    "Principal",
    "Probe",
    "Query",
    "QueryResult",
    "Quota",
    "Role",
    "Status",
    "Via",
    "VideoMatch",
    "VideoQuery",
    "now",
    "utc",
]

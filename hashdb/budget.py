"""What a match request costs the index, and the caps every edge enforces before it runs.

Why: the index's work per query grows steeply with the threshold (past the default
the multi-index tables need more probes per substring, and a search of a few queries
falls back to comparing every stored code), and a `dihedral` query is eight probes, so
the number of queries alone says little about a request's price. Batch-size limits
let one request of 10,000 dihedral queries at threshold 63 keep a core busy for
minutes; this module prices a request before any index work, so that an edge can
refuse it (`check_request_cost`) or charge it to the caller's key.

Unit: a *query unit* is one probe at the signal type's default threshold (one plain
PDQ query at 31 costs 1). A probe at threshold t costs `threshold_weight(signal, t)`:
the weight of the smallest threshold class at or above t (`WEIGHTS`). A query costs
the sum over its probes (the query itself, its dihedral forms, any other probe at
its own threshold); a request the sum over its queries, so a batch of n queries costs
exactly n single queries and batching is never charged extra. A video query costs
one probe per frame. Exact digests (md5, sha256) cost 1: one row lookup. A keypoint
set searched costs KEYPOINT_SET_WEIGHT, whatever the threshold (it takes none).

Weights come from benchmarks/budget.py (`--weights-only`), which times the production
index at each class for single queries and batches up to the largest request and
keeps, per class, the largest ratio to the default threshold over those batch sizes:
the index chooses its plan by batch size and threshold, and the largest ratio keeps
every request shape within the bound while the price stays linear. Re-measure them
whenever the index's plans change. Weights are integers, so costs are exact.

Caps: `check_threshold` is the one place a per-signal-type threshold cap
(`HASHDB_MAX_THRESHOLD_PDQ`, `HASHDB_MAX_THRESHOLD_PHASH`) is enforced: the matching
use case (hashdb/consortium/matching.py) calls it for every query of every edge, and
the API and the CLI call it first to name their own field.
`check_request_cost` refuses a request above `HASHDB_MAX_REQUEST_COST` with
`BudgetExceeded` (413), naming the setting.
"""

from __future__ import annotations

from collections.abc import Iterable

from hashdb.errors import BudgetExceeded, InvalidInput
from hashdb.matching import Probe, Query
from hashdb.settings import Settings
from hashdb.signals import PDQ, PHASH, Matching, SignalType

# Per Hamming signal type: (largest threshold of the class, weight), ascending. A
# threshold above the last class is priced at the last class (the settings cap it).
WEIGHTS: dict[str, tuple[tuple[int, int], ...]] = {
    PDQ.name: (
        (31, 1),
        (39, 47),
        (47, 47),
        (55, 47),
        (63, 320),
        (79, 320),
        (95, 320),
        (111, 365),
        (128, 1186),
    ),
    PHASH.name: ((10, 1), (12, 38), (14, 38), (16, 38), (24, 375), (32, 1232)),
}
MAX_REQUEST_COST_SETTING = "HASHDB_MAX_REQUEST_COST"
# A keypoint set searched (the query's, or its mirror's): candidate retrieval for up
# to 256 descriptors and the verification of up to 8 candidates cost about as much
# as this many PDQ queries at 31 (benchmarks/local_features.py times both).
KEYPOINT_SET_WEIGHT = 64


def threshold_weight(signal: SignalType, threshold: int | None) -> int:
    """Query units of one probe of `signal` at `threshold` (None: the default)."""
    if signal.matching is Matching.LOCAL:
        return KEYPOINT_SET_WEIGHT
    classes = WEIGHTS.get(signal.name)
    if classes is None:
        return 1
    t = signal.default_threshold if threshold is None else threshold
    for upto, weight in classes:
        if t <= upto:
            return weight
    return classes[-1][1]


def probe_cost(signal: SignalType, threshold: int | None, probes: int = 1) -> int:
    """Query units of `probes` probes of `signal` at `threshold` (a dihedral query: 8)."""
    return probes * threshold_weight(signal, threshold)


def query_cost(query: Query) -> int:
    """Query units of one query: its own probe plus every extra probe it carries."""
    own = threshold_weight(query.signal_type, query.threshold)
    extra = 0
    for probe in query.probes:
        if isinstance(probe, Probe) and probe.threshold is not None:
            extra += threshold_weight(query.signal_type, probe.threshold)
        else:
            extra += own
    return own + extra


def request_cost(queries: Iterable[Query]) -> int:
    """Query units of a batch: the sum of its queries' costs."""
    return sum(query_cost(q) for q in queries)


def video_cost(frames: int, threshold: int | None, keyframes: int = 0) -> int:
    """Query units of a video query: one PDQ probe per frame at `threshold`, and a
    keypoint set searched per keyframe."""
    return frames * threshold_weight(PDQ, threshold) + keyframes * KEYPOINT_SET_WEIGHT


def check_threshold(
    settings: Settings,
    signal: SignalType,
    threshold: int | None,
    field: str = "threshold",
    index: int | None = None,
) -> None:
    """Refuse a threshold above the signal type's cap (InvalidInput naming the setting)."""
    if threshold is None:
        return
    cap = settings.max_threshold(signal.name)
    if threshold > cap:
        setting = f"HASHDB_MAX_THRESHOLD_{signal.name.upper()}"
        raise InvalidInput(
            f"{signal.name} threshold {threshold} is above the maximum {cap} ({setting})",
            field=field,
            index=index,
            maximum=cap,
        )


def check_request_cost(settings: Settings, cost: int) -> None:
    """Refuse a request whose cost exceeds `max_request_cost`, before any index work."""
    if cost > settings.max_request_cost:
        raise BudgetExceeded(
            f"this request costs {cost:,} query units, above the per-request budget of "
            f"{settings.max_request_cost:,} ({MAX_REQUEST_COST_SETTING}); one plain query at "
            "the default threshold is 1 unit, higher thresholds and dihedral forms cost "
            "more: split the batch or lower the threshold",
            cost=cost,
            maximum=settings.max_request_cost,
            setting=MAX_REQUEST_COST_SETTING,
        )

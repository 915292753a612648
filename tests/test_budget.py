"""The request cost budget: what a match request costs, and who may spend how much.

A request is priced in query units before any index work (hashdb/budget.py); one
above HASHDB_MAX_REQUEST_COST is refused with 413, and each key spends its units
from a bucket refilled at HASHDB_KEY_COST_PER_SECOND (429 beyond it). The matching
use case (`Consortium.matching`) is where every edge's lookup is capped, priced
and charged. Threshold caps hold at every edge, the CLI included.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from click.testing import CliRunner

from hashdb.budget import (
    WEIGHTS,
    check_threshold,
    query_cost,
    request_cost,
    threshold_weight,
    video_cost,
)
from hashdb.cli import main
from hashdb.consortium import Actor, Consortium, VideoQuery
from hashdb.consortium.matching import price
from hashdb.consortium.ratelimit import RateLimiter
from hashdb.errors import BudgetExceeded, InvalidInput, RateLimited
from hashdb.matching import Probe, Query
from hashdb.settings import Settings, load_settings
from hashdb.signals import MD5, PDQ, PHASH, SIGNAL_TYPES, Matching
from hashdb.signals.pdq_dihedral import dihedral_probes
from hashdb.signals.vpdq import Frame
from hashdb.store import NewHash, Role, Store

if TYPE_CHECKING:
    from api_fixtures import Api, MakeApi

pytest_plugins = ["api_fixtures"]

HEX = "f8f8f0cce0f4e84d0e370a22028f67f0b36e2ed596623e1d33e6339c4e9c9b22"
VALUE = bytes.fromhex(HEX)
STORED = 2_000  # enough that the refused request, had it run, would take many seconds


def pdq(threshold: int | None = None, dihedral: bool = False) -> Query:
    forms = dihedral_probes(VALUE) if dihedral else ()
    return Query(PDQ, VALUE, threshold, None, forms)


# ---- the cost model ---------------------------------------------------------------


def test_a_plain_query_at_the_default_threshold_is_one_unit() -> None:
    """A keypoint set is priced by what its search costs (KEYPOINT_SET_WEIGHT),
    since it takes no threshold."""
    for signal in SIGNAL_TYPES.values():
        if signal.matching is Matching.LOCAL:
            continue
        assert threshold_weight(signal, None) == 1
        assert threshold_weight(signal, signal.default_threshold) == 1
    assert query_cost(pdq()) == 1
    assert query_cost(Query(MD5, bytes(16))) == 1


def test_the_weight_never_falls_as_the_threshold_rises() -> None:
    for signal in (PDQ, PHASH):
        weights = [threshold_weight(signal, t) for t in range(signal.bits // 2 + 1)]
        assert weights == sorted(weights)
        assert weights[-1] > 100 * weights[0]  # the index's work really does grow
    uppers = [upto for upto, _ in WEIGHTS[PDQ.name]]
    assert uppers == sorted(uppers) and uppers[-1] >= PDQ.bits // 2


def test_cost_grows_with_forms_and_queries_and_a_batch_costs_its_singles() -> None:
    single = request_cost([pdq(47)])
    assert query_cost(pdq(47, dihedral=True)) == 8 * single
    assert request_cost([pdq(47)] * 100) == 100 * single
    for t in (31, 47, 63):
        by_count = [request_cost([pdq(t)] * n) for n in (1, 10, 100)]
        assert by_count[0] < by_count[1] < by_count[2]
    for n in (1, 10):
        by_threshold = [request_cost([pdq(t, dihedral=True)] * n) for t in range(65)]
        assert by_threshold == sorted(by_threshold)
    for n in (1, 7, 10_000):
        mixed = [pdq(63, dihedral=True), pdq(), Query(PHASH, bytes(8), 16)] * n
        assert request_cost(mixed) == n * request_cost(mixed[:3])
    assert request_cost([pdq(31)] * 11) > request_cost([pdq(31)] * 10)
    assert request_cost([pdq(63)]) > request_cost([pdq(47)]) > request_cost([pdq(31)])


def test_a_probe_with_its_own_threshold_is_priced_at_it() -> None:
    probe = Probe("content", VALUE, 63)
    assert query_cost(Query(PDQ, VALUE, 31, None, (probe,))) == 1 + threshold_weight(PDQ, 63)
    assert video_cost(100, None) == 100
    assert video_cost(100, 63) == 100 * threshold_weight(PDQ, 63)


def test_the_default_budget_admits_a_full_plain_batch_and_not_the_hostile_one() -> None:
    settings = Settings()
    assert request_cost([pdq()] * settings.max_batch) <= settings.max_request_cost
    hostile = [pdq(settings.max_threshold_pdq, dihedral=True)] * settings.max_batch
    assert request_cost(hostile) > settings.max_request_cost


def test_a_burst_smaller_than_one_request_is_refused_at_start_up() -> None:
    with pytest.raises(InvalidInput, match="HASHDB_KEY_COST_BURST"):
        load_settings(max_request_cost=1000, key_cost_burst=999)
    assert load_settings(max_request_cost=1000).key_cost_capacity == 1000


def test_threshold_caps_are_checked_in_one_place_for_every_signal_type() -> None:
    settings = Settings(max_threshold_pdq=40, max_threshold_phash=12)
    check_threshold(settings, PDQ, 40)
    check_threshold(settings, PHASH, None)
    with pytest.raises(InvalidInput) as exc:
        check_threshold(settings, PHASH, 13, "threshold", 4)
    assert exc.value.details == {"field": "threshold", "index": 4, "maximum": 12}
    assert "HASHDB_MAX_THRESHOLD_PHASH" in exc.value.message


# ---- the per-key bucket -----------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_key_bucket_counts_units_so_a_batch_spends_what_its_singles_do() -> None:
    clock = Clock()
    singles, batches = RateLimiter(0, 1, clock), RateLimiter(0, 1, clock)
    for _ in range(100):
        singles.spend(1, 1, per_second=10, capacity=100)
    batches.spend(1, 100, per_second=10, capacity=100)
    for limiter in (singles, batches):  # both are empty now, and refill alike
        with pytest.raises(RateLimited) as exc:
            limiter.spend(1, 30, per_second=10, capacity=100)
        assert exc.value.retry_after == 3
        assert "query units" in exc.value.message
    clock.now += 3
    singles.spend(1, 30, per_second=10, capacity=100)
    batches.spend(1, 30, per_second=10, capacity=100)
    batches.spend(2, 100, per_second=10, capacity=100)  # another key has its own bucket
    RateLimiter(0, 1, clock).spend(1, 10**9, per_second=0, capacity=1)  # 0 disables it


# ---- the matching use case --------------------------------------------------------


def test_every_lookup_is_capped_priced_and_charged_in_the_matching_use_case(store: Store) -> None:
    settings = Settings(
        max_request_cost=100,
        key_cost_per_second=1,
        rate_limit_per_minute=1,
        rate_limit_burst=2,
        max_threshold_pdq=40,
    )
    db = Consortium(settings, store)
    member = store.members.create("Platform A", Role.MEMBER)[0]
    with_key, without_key = Actor(member, key_id=1), Actor(member)
    assert db.matching.answer(with_key, [pdq()] * 60).cost == 60
    with pytest.raises(RateLimited) as short:
        db.matching.answer(with_key, [pdq()] * 60)  # 20 units short at 1 a second
    assert short.value.retry_after >= 19
    assert db.matching.answer(without_key, [pdq()] * 60).cost == 60  # no key: no bucket
    with pytest.raises(BudgetExceeded):
        db.matching.answer(without_key, [pdq()] * 101)
    with pytest.raises(InvalidInput, match="HASHDB_MAX_THRESHOLD_PDQ"):
        db.matching.match(None, [pdq(41)])
    frames = tuple(Frame(i, float(i), VALUE, 100) for i in range(3))
    video = VideoQuery(frames, threshold=40)
    assert price([pdq()], [video]) == 1 + 3 * threshold_weight(PDQ, 40)
    with pytest.raises(BudgetExceeded):  # 141 units: each frame is a probe at 40
        db.matching.answer(None, [], [video])
    assert db.matching.answer(None, [], [VideoQuery(frames)]).cost == 3
    db.members.admit(with_key)  # one request each, from the key's request rate
    db.members.admit(with_key)
    with pytest.raises(RateLimited, match="requests a minute"):
        db.members.admit(with_key)
    db.members.admit(without_key)  # no key: nothing to take


# ---- the API ----------------------------------------------------------------------


@pytest.fixture
def stored_api(make_api: MakeApi) -> Api:
    """An API over STORED random PDQ hashes (added through the store's batch add)."""
    api = make_api(rate_limit_per_minute=0)
    codes = np.random.default_rng(3).integers(0, 256, size=(STORED, 32), dtype=np.uint8)
    member = api.store.members.by_name("test-member")
    api.store.hashes.add(member.id, [NewHash("pdq", bytes(c)) for c in codes])
    return api


def batch(count: int, threshold: int | None = None, dihedral: bool = False) -> dict[str, object]:
    query: dict[str, object] = {"signal_type": "pdq", "value": HEX, "dihedral": dihedral}
    if threshold is not None:
        query["threshold"] = threshold
    return {"queries": [query] * count}


def test_the_hostile_batch_is_refused_before_any_index_work_and_a_full_batch_answered(
    stored_api: Api,
) -> None:
    # Run, it would search 80,000 probes by scanning every stored hash: many seconds.
    started = time.perf_counter()
    refused = stored_api.post("/v1/match", batch(10_000, 63, dihedral=True))
    elapsed = time.perf_counter() - started
    assert refused.status_code == 413, refused.json
    error = refused.json["error"]  # type: ignore[index]
    assert error["code"] == "budget_exceeded"
    expected = 10_000 * 8 * threshold_weight(PDQ, 63)
    assert error["details"] == {
        "cost": expected,
        "maximum": Settings().max_request_cost,
        "setting": "HASHDB_MAX_REQUEST_COST",
    }
    assert "HASHDB_MAX_REQUEST_COST" in error["message"] and f"{expected:,}" in error["message"]
    assert elapsed < 3.0
    # The most plain queries one request may carry are within the budget.
    answered = stored_api.post("/v1/match", batch(10_000))
    assert answered.status_code == 200, answered.json
    assert len(answered.json["results"]) == 10_000  # type: ignore[index]


def test_past_its_unit_budget_a_key_gets_429_with_retry_after(make_api: MakeApi) -> None:
    api = make_api(max_request_cost=100, key_cost_per_second=1)
    assert api.post("/v1/match", batch(60)).status_code == 200
    limited = api.post("/v1/match", batch(60))
    assert limited.status_code == 429
    error = limited.json["error"]  # type: ignore[index]
    assert error["code"] == "rate_limited" and "query units" in error["message"]
    assert int(limited.headers["Retry-After"]) >= 19  # 20 units short at 1 a second
    assert error["details"]["cost"] == 60
    # What is left still serves smaller requests, and other keys have their own budget.
    assert api.post("/v1/match", batch(40)).status_code == 200
    assert api.post("/v1/match", batch(60), "admin").status_code == 200
    over = api.post("/v1/match", batch(101), "admin")
    assert over.status_code == 413


def test_a_video_query_is_priced_per_frame(api: Api) -> None:
    frames = "\n".join(f"{i},100,{HEX},{i}.0" for i in range(200))
    query = {"signal_type": "vpdq", "value": frames, "threshold": 63}
    refused = api.post("/v1/match", {"queries": [query]})
    assert refused.status_code == 413, refused.json
    assert refused.json["error"]["details"]["cost"] == 200 * threshold_weight(PDQ, 63)  # type: ignore[index]
    assert api.post("/v1/match", {"queries": [query | {"threshold": 31}]}).status_code == 200


def test_an_api_threshold_above_the_cap_names_the_setting(api: Api) -> None:
    refused = api.post("/v1/match", batch(1, 64))
    assert refused.status_code == 400
    assert "HASHDB_MAX_THRESHOLD_PDQ" in refused.json["error"]["message"]  # type: ignore[index]


# ---- the CLI ----------------------------------------------------------------------


def test_the_cli_refuses_a_threshold_above_the_cap(db_url: str, tmp_path: Path) -> None:
    env = {"HASHDB_DATABASE_URL": db_url, "HASHDB_DATA_DIR": str(tmp_path)}
    runner = CliRunner()
    assert runner.invoke(main, ["init"], env=env).exit_code == 0
    refused = runner.invoke(main, ["match", f"pdq:{HEX}", "--threshold", "64"], env=env)
    assert refused.exit_code == 2
    assert "above the maximum 63" in refused.output
    assert "HASHDB_MAX_THRESHOLD_PDQ" in refused.output
    capped = {**env, "HASHDB_MAX_THRESHOLD_PDQ": "40"}
    assert runner.invoke(main, ["match", HEX, "--threshold", "41"], env=capped).exit_code == 2
    assert runner.invoke(main, ["match", HEX, "--threshold", "40"], env=capped).exit_code == 0

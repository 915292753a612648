"""Measure what N API worker processes hold when they map one index snapshot.

    .venv/bin/python -m benchmarks.shared_index [--hashes 1000000] [--workers 4]
        [--no-freeze]

Builds a snapshot of `--hashes` random PDQ hashes (plus an empty pHash one) on a
scratch SQLite database, then starts worker processes that each load it and read
every page of the index once (the steady state of a worker that has served for a
while); then, one worker at a time (so that they do not compete for the CPUs), each
times `--queries` single-query searches at PDQ's threshold, in wall-clock time and
in the thread's CPU time (which a busy machine disturbs less). Then, with every
process still alive, it reads each one's RSS and PSS from /proc/<pid>/smaps_rollup
and the PSS of its maps of the snapshot files from /proc/<pid>/smaps, and prints
them.

The headline is what `hashdb serve` does: one master process runs the same
pre-fork step (`api.loader.preload`: the worker's imports and numba kernels, then
`gc.freeze` unless `--no-freeze`), then forks the workers; each builds its own app
with `api.create_app` against the scratch database, which loads the indexes from the
mapped snapshot in its loader thread as an API worker does. Each worker also counts
the numba kernels it had to compile or load itself (0 when the master's survived the
fork). Total PSS there counts the master too (its share of the pages it shares with
the workers is real memory of the machine). For comparison it also runs
independently started processes, as before the pre-fork step: 1 and `--workers`
processes that build their apps the same way (each importing and loading its own
kernels), 1 and `--workers` processes mapping the snapshot (`LiveIndexes.load`, no
app), and `--workers` that
load it onto the heap (`mapped=False`, what every worker did before snapshots were
mapped). The media sandbox's processes (`ingest.sandbox`, started on a worker's
first upload or by `hashdb serve`'s warm-up) are not started and not counted.

"index memory" is what the index costs the machine: each worker's PSS of the mapped
snapshot files plus its private index arrays (live flags, additions). The 4-vs-1
ratios of total PSS and of index memory are the figures to hold under 1.5x.
Linux only (reads /proc; forks). Not run in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import numpy as np

from hashdb.index import MIHIndex
from hashdb.index.snapshot import load_snapshots, save_snapshots
from hashdb.matching.live import LiveIndexes
from hashdb.store import MATCHABLE, Store

THRESHOLD = 31
APP_LOAD_SECONDS = 600.0

# How a worker holds the index: built by its app (`api.create_app`, mapped snapshot),
# mapped by LiveIndexes without an app, or loaded onto the heap.
Kind = Literal["app", "mapped", "heap"]


def build(root: Path, hashes: int) -> np.ndarray:
    """Save a snapshot of `hashes` random PDQ codes under `root`; returns some of them."""
    rng = np.random.default_rng(16)
    index = MIHIndex(256, background=False)  # one build at the end
    step = 1_000_000
    sample = np.empty((0, 32), np.uint8)
    for start in range(0, hashes, step):
        codes = rng.integers(0, 256, (min(step, hashes - start), 32), dtype=np.uint8)
        index.add(np.arange(start, start + len(codes), dtype=np.int64), codes)
        if start == 0:
            sample = codes[:1000].copy()
    index.compact()
    Store.open(database_url(root), migrate_schema=True).close()  # change-log head 0
    save_snapshots({"pdq": index, "phash": MIHIndex(64)}, root / "snapshots", cursor=0)
    return sample


def database_url(root: Path) -> str:
    return f"sqlite:///{root / 'scratch.sqlite3'}"


def compiled_kernels() -> int:
    """How many compiled versions of the index's and video hasher's numba kernels
    this process holds (compiled or loaded from numba's disk cache)."""
    from numba.core.dispatcher import Dispatcher

    from hashdb.index import kernels
    from ingest import video_pdq

    return sum(
        len(value.overloads)
        for module in (kernels, video_pdq)
        for value in vars(module).values()
        if isinstance(value, Dispatcher)
    )


def worker(root: Path, kind: Kind, queries: int, inp: IO[str], out: IO[str]) -> None:
    """One worker: load, touch every page, wait for its turn, time single queries,
    report, wait until measured."""
    kernels_before = compiled_kernels()
    closing = []
    if kind == "app":
        from api.app import create_app
        from api.context import context
        from hashdb.settings import load_settings

        settings = load_settings(database_url=database_url(root), snapshot_dir=root / "snapshots")
        ctx = context(create_app(settings))
        if not ctx.loader.wait(APP_LOAD_SECONDS):
            raise SystemExit("the app did not load its indexes")
        closing.append(ctx.close)
        index = ctx.db.matcher._indexes["pdq"]  # the benchmark inspects the internals
    elif kind == "mapped":
        store = Store.open(database_url(root), migrate_schema=False)
        closing.append(store.close)
        live = LiveIndexes(store.hashes, store.changes, None, MATCHABLE, root / "snapshots")
        if not live.load():
            raise SystemExit("the snapshot was not restored")
        index = live["pdq"]
    else:
        found = load_snapshots(root / "snapshots", {"pdq": 256, "phash": 64}, mapped=False)
        if found is None:
            raise SystemExit("the snapshot was not loaded")
        index = found[0]["pdq"]
    assert isinstance(index, MIHIndex)
    segment = index.state().segment
    for array in (segment.codes, segment.ids, segment.offsets, segment.rows, segment.tags):
        int(array.reshape(-1).view(np.uint8)[::4096].sum())  # every page resident
    print("loaded", file=out, flush=True)
    inp.readline()  # its turn: the workers time their queries one at a time
    sample = np.load(root / "sample.npy")
    rng = np.random.default_rng(os.getpid())
    picked = sample[rng.integers(0, len(sample), queries)]
    picked ^= (rng.random(picked.shape) < 0.03).astype(np.uint8)  # near-duplicates
    wall, cpu = [], []
    for q in picked:
        t0, c0 = time.perf_counter(), time.thread_time()
        index.search(q[None, :], THRESHOLD)
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - t0)
    report = {
        "pid": os.getpid(),
        "p50_us": statistics.median(wall) * 1e6,
        "cpu_p50_us": statistics.median(cpu) * 1e6,
        "private": index.nbytes() - index.mapped_nbytes(),
        "kernels": compiled_kernels() - kernels_before,
    }
    print(json.dumps(report), file=out, flush=True)
    inp.readline()  # hold everything until the parent has measured
    for close in closing:
        close()


def master(root: Path, workers: int, queries: int, freeze: bool) -> None:
    """`hashdb serve`'s shape: the pre-fork step, then `workers` forked workers that
    build their apps. Relays the parent's lines to the workers one at a time (each
    worker reads its own pipe), and their lines back, on stdin and stdout."""
    from api.loader import preload

    preload(freeze=freeze)
    children: list[tuple[int, IO[str], IO[str]]] = []
    for _ in range(workers):
        child_in, parent_out = os.pipe()
        parent_in, child_out = os.pipe()
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            for _, earlier_out, earlier_in in children:  # so that their pipes can close
                earlier_out.close()
                earlier_in.close()
            os.close(parent_out)
            os.close(parent_in)
            code = 0
            try:
                with os.fdopen(child_in) as inp, os.fdopen(child_out, "w") as out:
                    worker(root, "app", queries, inp, out)
            except BaseException:
                traceback.print_exc()
                code = 1
            os._exit(code)
        os.close(child_in)
        os.close(child_out)
        children.append((pid, os.fdopen(parent_out, "w"), os.fdopen(parent_in)))
    print(json.dumps({"master": os.getpid()}), flush=True)
    try:
        for _, _, from_worker in children:
            print(from_worker.readline().strip(), flush=True)  # "loaded"
        for _, to_worker, from_worker in children:
            sys.stdin.readline()
            to_worker.write("go\n")
            to_worker.flush()
            print(from_worker.readline().strip(), flush=True)  # the report
        sys.stdin.readline()  # measured
    finally:
        for pid, to_worker, from_worker in children:
            to_worker.close()
            from_worker.close()
            os.waitpid(pid, 0)


@dataclass
class Measured:
    pid: int
    rss: int
    pss: int
    snapshot_pss: int
    private_index: int
    p50_us: float
    cpu_p50_us: float
    kernels: int

    @property
    def index_memory(self) -> int:
        return self.snapshot_pss + self.private_index


@dataclass
class Run:
    workers: list[Measured]
    master: Measured | None = None  # the forking master, when there is one

    @property
    def total_pss(self) -> int:
        return sum(m.pss for m in self.processes)

    @property
    def processes(self) -> list[Measured]:
        return [*([self.master] if self.master else []), *self.workers]

    @property
    def index_memory(self) -> int:
        return sum(m.index_memory for m in self.workers)


def rollup(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value, *_ = line.split()
        out[key.rstrip(":")] = int(value) * 1024
    return out


def mapped_pss(pid: int, under: Path) -> int:
    """PSS of the process's maps of files under `under` (unlinked ones included)."""
    total, inside = 0, False
    prefix = str(under.resolve())
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if len(head) >= 5 and "-" in head[0] and ":" not in head[0]:
            inside = len(head) >= 6 and head[5].startswith(prefix)
        elif inside and head[0] == "Pss:":
            total += int(head[1]) * 1024
    return total


def measure(root: Path, report: dict[str, float]) -> Measured:
    pid = int(report["pid"])
    roll = rollup(pid)
    return Measured(
        pid,
        roll["Rss"],
        roll["Pss"],
        mapped_pss(pid, root / "snapshots"),
        int(report.get("private", 0)),
        report.get("p50_us", 0.0),
        report.get("cpu_p50_us", 0.0),
        int(report.get("kernels", 0)),
    )


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.shared_index", *args]


def run_forked(root: Path, workers: int, queries: int, freeze: bool) -> Run:
    """One master that preloads and forks `workers` app workers."""
    args = ["--master", str(workers), "--root", str(root), "--queries", str(queries)]
    p = subprocess.Popen(
        command(*args, *([] if freeze else ["--no-freeze"])),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert p.stdin is not None
    try:
        master_pid = int(json.loads(_line(p))["master"])
        for _ in range(workers):
            if _line(p) != "loaded":
                raise SystemExit(f"a forked worker failed (exit {p.wait()})")
        reports = []
        for _ in range(workers):
            p.stdin.write("go\n")
            p.stdin.flush()
            reports.append(json.loads(_line(p)))
        return Run([measure(root, r) for r in reports], measure(root, {"pid": master_pid}))
    finally:
        p.stdin.close()
        p.wait()


def run_independent(root: Path, kind: Kind, workers: int, queries: int) -> Run:
    """`workers` processes started on their own, each loading the index."""
    procs = [
        subprocess.Popen(
            command("--child", kind, "--root", str(root), "--queries", str(queries)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(workers)
    ]
    try:
        for p in procs:  # all loaded (and so all mapping the snapshot) first
            if _line(p) != "loaded":
                raise SystemExit(f"a {kind} worker failed (exit {p.wait()})")
        reports = []
        for p in procs:  # then timed one at a time, so they do not share the CPUs
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
            reports.append(json.loads(_line(p)))
        return Run([measure(root, r) for r in reports])
    finally:
        for p in procs:
            assert p.stdin is not None
            p.stdin.close()
            p.wait()


def _line(p: subprocess.Popen[str]) -> str:
    assert p.stdout is not None
    line = p.stdout.readline().strip()
    if not line:
        raise SystemExit(f"a worker failed (exit {p.wait()})")
    return line


def mib(n: float) -> str:
    return f"{n / 2**20:8.1f} MiB"


def show(label: str, run: Run) -> None:
    print(f"{label}:")
    if run.master:
        m = run.master
        print(f"  master {m.pid}: RSS {mib(m.rss)}  PSS {mib(m.pss)}")
    for m in run.workers:
        print(
            f"  pid {m.pid}: RSS {mib(m.rss)}  PSS {mib(m.pss)}  snapshot PSS {mib(m.snapshot_pss)}"
            f"  private index {mib(m.private_index)}  p50 {m.p50_us:.0f} us"
            f" (CPU {m.cpu_p50_us:.0f} us)  kernels compiled/loaded here {m.kernels}"
        )
    p50 = statistics.median(m.p50_us for m in run.workers)
    cpu = statistics.median(m.cpu_p50_us for m in run.workers)
    print(
        f"  total PSS {mib(run.total_pss)}{' (master included)' if run.master else ''}"
        f"  index memory {mib(run.index_memory)}  median p50 {p50:.0f} us (CPU {cpu:.0f} us)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hashes", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument(
        "--no-freeze", action="store_true", help="skip gc.freeze() in the master's pre-fork step"
    )
    parser.add_argument("--child", choices=["app", "mapped", "heap"], help=argparse.SUPPRESS)
    parser.add_argument("--master", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    freeze = not args.no_freeze
    if args.child:
        worker(args.root, args.child, args.queries, sys.stdin, sys.stdout)
        return
    if args.master:
        master(args.root, args.master, args.queries, freeze)
        return
    n = args.workers
    with tempfile.TemporaryDirectory(prefix="hashdb-shared-index-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        np.save(root / "sample.npy", build(root, args.hashes))
        size = sum(p.stat().st_size for p in (root / "snapshots").rglob("*.npy"))
        print(
            f"{args.hashes:,} PDQ hashes: snapshot {mib(size)} on disk, "
            f"built and saved in {time.perf_counter() - t0:.1f} s"
        )
        how = "preload + gc.freeze" if freeze else "preload, no gc.freeze"
        one = run_forked(root, 1, args.queries, freeze)
        show(f"as `hashdb serve` ({how}): master + 1 worker", one)
        many = run_forked(root, n, args.queries, freeze)
        show(f"as `hashdb serve` ({how}): master + {n} workers", many)
        solo_app = run_independent(root, "app", 1, args.queries)
        show("independent processes (no preload): 1 worker with its app", solo_app)
        many_app = run_independent(root, "app", n, args.queries)
        show(f"independent processes (no preload): {n} workers with their apps", many_app)
        solo = run_independent(root, "mapped", 1, args.queries)
        show("independent processes: 1 worker, mapped (no app)", solo)
        mapped = run_independent(root, "mapped", n, args.queries)
        show(f"independent processes: {n} workers, mapped (no app)", mapped)
        heap = run_independent(root, "heap", n, args.queries)
        show(f"independent processes: {n} workers, heap-loaded (no app)", heap)
        workers_alone = sum(m.pss for m in many.workers) / sum(m.pss for m in one.workers)
        print(
            f"{n} vs 1 worker, as `hashdb serve` ({how}): "
            f"total PSS {many.total_pss / one.total_pss:.2f}x (master + workers; "
            f"the workers alone {workers_alone:.2f}x), "
            f"index memory {many.index_memory / one.index_memory:.2f}x (target < 1.5x)"
        )
        print(
            f"{n} vs 1 worker, independent processes: "
            f"total PSS {many_app.total_pss / solo_app.total_pss:.2f}x with apps, "
            f"{mapped.total_pss / solo.total_pss:.2f}x mapped without, "
            f"index memory {mapped.index_memory / solo.index_memory:.2f}x mapped, "
            f"{heap.index_memory / solo.index_memory:.2f}x heap-loaded"
        )
        for what, key in (("wall", "p50_us"), ("thread CPU", "cpu_p50_us")):
            p50 = {
                label: statistics.median(getattr(m, key) for m in run.workers)
                for label, run in (
                    ("forked app", many),
                    ("independent app", many_app),
                    ("mapped", mapped),
                    ("heap", heap),
                )
            }
            print(
                f"single-query p50 ({what}): "
                + ", ".join(f"{label} {v:.0f} us" for label, v in p50.items())
            )


if __name__ == "__main__":
    main()

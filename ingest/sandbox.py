"""Decoding and hashing uploads in child processes, so a hostile file costs one job.

Decoders are large C libraries (libpng, libjpeg, FFmpeg) fed untrusted bytes. In the
API worker a file that makes FFmpeg abort kills the worker and every request it is
serving; one that decodes to gigabytes holds the worker's memory and CPU for
seconds. So the API worker never decodes: it hands the bytes to a `Sandbox`, a small
pool of persistent child processes, one job per child at a time.

Contracts:

- **Children** are started from a forkserver that has the ingest modules imported
  (`PRELOAD`): never forked from the threaded API worker, and a new child costs a
  fork, not an interpreter start, so a dead one is replaced within milliseconds
  (in the background, before anyone waits for it). Their BLAS and OpenMP pools get
  one thread (`THREAD_VARIABLES`): a job is one upload, parallelism comes from the
  pool, and idle threads would only inflate the address space. As with "spawn", a
  child imports the parent's `__main__` script first: a script that makes a
  `Sandbox` needs the `if __name__ == "__main__"` guard.
- **A job** is a top-level function taking the file bytes first; its other
  arguments and its result must pickle. The bytes travel over the pipe as they are.
  The image jobs here (`image_hashes`, `probed_image`, `image_with_variants`) apply
  the decoded-size budget (`max_decoded_bytes`, checked from the header by
  `ingest.decode`) before the hashing they wrap.
- **Limits per job** (`JobLimits`): memory (RLIMIT_DATA, soft, set to what the
  child holds idle plus the budget), CPU time (RLIMIT_CPU, soft, set to the CPU the
  child has used plus the budget: the kernel kills it with SIGXCPU), and wall time
  (the parent stops waiting and kills the child).
- **Outcomes**: the job's result; the job's own `HashdbError` (MediaError,
  UnsupportedMedia, ...) rebuilt in the parent as the same class with the same
  message and details; or, when the child crashed, was killed or ran out of a
  budget, a `MediaError` (422) saying which ("the decoder crashed on this file
  (SIGABRT)", "exceeded the media memory limit of N MiB", "exceeded the CPU limit
  of N s", "took longer than N s"), logged at WARNING with the caller's tag (the
  request id) and the file's SHA-256. Only that job is lost; the pool keeps serving.
  Any other exception in a job is a bug: RuntimeError with the child's traceback.
- **Priority**: a job may run at a lower CPU priority (`JobLimits.nice`), so that
  long jobs (videos) yield the cores to short ones (images). A child that cannot
  raise its priority again afterwards (no CAP_SYS_NICE) is replaced.
- **Waiting**: a caller waits at most `wait_seconds` for a free child, then gets
  `OutsideFailure` (503).
- **Recycling**: a child is replaced after `recycle_jobs` jobs, when its resident
  memory passes `recycle_rss_mib` after a job, after a MemoryError, and after a
  job with a lower priority that it cannot undo.
- **Lifetime**: `close()` stops every child. A child also exits when its parent
  dies: an idle one reads end-of-file on its pipe; every one is sent SIGKILL by the
  kernel when the forkserver (which exits with the API worker) dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import importlib
import logging
import math
import multiprocessing
import os
import resource
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from hashdb.consortium import NewVariant
from hashdb.errors import HashdbError, MediaError, OutsideFailure
from ingest.decode import DEFAULT_MAX_DECODED_BYTES, admit, decode
from ingest.image import DEFAULT_MAX_PIXELS, ImageHashes, hash_decoded
from ingest.probes import DEFAULT, ProbedImage, ProbeOptions, probe_queries
from ingest.records import hash_with_variants

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

PRELOAD = ["ingest.sandbox", "ingest.image", "ingest.probes", "ingest.records", "ingest.video"]
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
RECYCLE_JOBS = 500
RECYCLE_RSS_MIB = 1024
_MIB = 1024 * 1024
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class JobLimits:
    """What one job may use of its child process."""

    memory_mib: int  # allocated beyond what the idle child holds
    cpu_seconds: float
    wall_seconds: float
    nice: int = 0  # added to the child's nice value during the job (lower CPU priority)


# ---- jobs: top-level, so that a child can import them by name ----


def image_hashes(
    data: bytes,
    *,
    dihedral: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES,
) -> ImageHashes:
    """`ingest.image.hash_image` within a decoded-size budget."""
    decoded = decode(data, max_pixels=max_pixels, max_decoded_bytes=max_decoded_bytes)
    return hash_decoded(data, decoded, dihedral=dihedral)


def probed_image(
    data: bytes,
    options: ProbeOptions = DEFAULT,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES,
) -> ProbedImage:
    """`ingest.probes.probe_queries` within a decoded-size budget."""
    admit(data, max_pixels=max_pixels, max_decoded_bytes=max_decoded_bytes)
    return probe_queries(data, options, max_pixels=max_pixels)


def image_with_variants(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES,
) -> tuple[ImageHashes, tuple[NewVariant, ...]]:
    """`ingest.records.hash_with_variants` within a decoded-size budget."""
    admit(data, max_pixels=max_pixels, max_decoded_bytes=max_decoded_bytes)
    return hash_with_variants(data, max_pixels=max_pixels)


# ---- the child ----


def _serve(conn: Connection) -> None:
    """A child's life: run jobs from `conn` until it closes or says stop (None)."""
    _die_with_parent()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file of a crashed decoder
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the server, which stops us
    while True:
        try:
            order = conn.recv()
            if order is None:
                return
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return  # the parent is gone
        job, args, kwargs, limits = order
        base = os.getpriority(os.PRIO_PROCESS, 0)
        with _limited(limits):
            os.setpriority(os.PRIO_PROCESS, 0, base + limits.nice)
            reply = _attempt(job, data, args, kwargs)
        del data
        try:
            os.setpriority(os.PRIO_PROCESS, 0, base)
            reusable = True
        except PermissionError:  # lowering nice again needs CAP_SYS_NICE: retire
            reusable = False
        try:
            conn.send((*reply, _rss(), reusable))
        except Exception as exc:  # an unpicklable result: a bug to report
            conn.send(("bug", f"the result cannot be sent: {exc!r}", _rss(), reusable))


def _attempt(job: Callable[..., Any], data: bytes, args: Any, kwargs: Any) -> tuple[str, Any]:
    try:
        return "ok", job(data, *args, **kwargs)
    except MemoryError:
        return "memory", None
    except HashdbError as exc:
        cls = type(exc)
        return "error", (cls.__module__, cls.__qualname__, exc.message, dict(vars(exc)))
    except Exception:  # a bug in a job: its traceback goes to the parent
        return "bug", traceback.format_exc()


@contextlib.contextmanager
def _limited(limits: JobLimits) -> Any:
    """Soft limits for one job: memory above the current data size, CPU above the
    CPU used so far. Hard limits stay as they were, so the next job can raise them."""
    _, data_hard = resource.getrlimit(resource.RLIMIT_DATA)
    _, cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)
    memory = _data_size() + limits.memory_mib * _MIB
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = math.ceil(usage.ru_utime + usage.ru_stime + limits.cpu_seconds)
    resource.setrlimit(resource.RLIMIT_DATA, (_capped(memory, data_hard), data_hard))
    resource.setrlimit(resource.RLIMIT_CPU, (_capped(cpu, cpu_hard), cpu_hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (data_hard, data_hard))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_hard, cpu_hard))


def _capped(value: int, hard: int) -> int:
    return value if hard == resource.RLIM_INFINITY else min(value, hard)


def _data_size() -> int:
    """The process's data segment (VmData: what RLIMIT_DATA counts), in bytes."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmData:"):
            return int(line.split()[1]) * 1024
    raise OSError("VmData missing from /proc/self/status")


def _rss() -> int:
    resident_pages = int(Path("/proc/self/statm").read_text(encoding="ascii").split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def _die_with_parent() -> None:
    """SIGKILL this child when its parent (the forkserver) dies."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # it died before prctl took effect
        os._exit(1)


# ---- the parent ----


class _Lost(Exception):
    """The child running a job is gone; the message says why, for the MediaError."""


@dataclass(eq=False)
class _Child:
    process: BaseProcess
    conn: Connection
    jobs: int = 0


class Sandbox:
    """A pool of child processes that run media jobs under limits (module docstring)."""

    def __init__(
        self,
        size: int,
        *,
        wait_seconds: float,
        recycle_jobs: int = RECYCLE_JOBS,
        recycle_rss_mib: int = RECYCLE_RSS_MIB,
    ) -> None:
        if size < 1:
            raise ValueError("a sandbox needs at least one process")
        self.size = size
        self._wait = wait_seconds
        self._recycle_jobs = recycle_jobs
        self._recycle_rss = recycle_rss_mib * _MIB
        self._cond = threading.Condition()
        self._idle: list[_Child] = []
        self._live = 0  # children started or starting, idle or busy
        self._closed = False
        self._mp = _forkserver()

    def warm(self) -> None:
        """Start one child in the background, so the first job finds it ready (the
        first start also starts the forkserver, which imports the ingest modules)."""
        with self._cond:
            if self._closed or self._live >= self.size:
                return
            self._live += 1
        threading.Thread(target=self._fill, name="media-sandbox-warm", daemon=True).start()

    def run(
        self,
        limits: JobLimits,
        tag: str,
        job: Callable[Concatenate[bytes, P], T],
        data: bytes,
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """`job(data, *args, **kwargs)` in a child, under `limits`; `tag` names the
        caller in the log (a request id). Errors as described in the module docstring."""
        child = self._borrow()
        try:
            kind, payload, rss, reusable = self._exchange(child, limits, job, data, args, kwargs)
        except _Lost as lost:
            self._discard(child)
            digest = hashlib.sha256(data).hexdigest()
            log.warning("media job %s for %s (file sha256 %s): %s", job.__name__, tag, digest, lost)
            raise MediaError(str(lost), reason="sandbox") from None
        except BaseException:
            self._discard(child)
            raise
        child.jobs += 1
        worn = not reusable or child.jobs >= self._recycle_jobs or rss > self._recycle_rss
        if kind == "memory" or worn:
            self._discard(child)
        else:
            self._release(child)
        if kind == "ok":
            result: T = payload
            return result
        if kind == "error":
            raise _rebuild(*payload)
        if kind == "memory":
            digest = hashlib.sha256(data).hexdigest()
            message = f"exceeded the media memory limit of {limits.memory_mib} MiB"
            log.warning(
                "media job %s for %s (file sha256 %s): %s", job.__name__, tag, digest, message
            )
            raise MediaError(message, reason="sandbox")
        raise RuntimeError(f"media job {job.__name__} failed in the sandbox:\n{payload}")

    def close(self) -> None:
        """Stop every child; jobs running now end with their child."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._cond.notify_all()
        for child in idle:
            _stop(child)

    # -- lending --

    def _borrow(self) -> _Child:
        deadline = time.monotonic() + self._wait
        dead: _Child | None = None
        with self._cond:
            while True:
                if self._closed:
                    raise OutsideFailure("the media sandbox is shut down")
                if self._idle:
                    child = self._idle.pop()
                    if _idle_and_alive(child):
                        return child
                    dead = child  # died while idle: its slot gets a fresh child
                    break
                if self._live < self.size:
                    self._live += 1
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise OutsideFailure(
                        f"all {self.size} media processes stayed busy for "
                        f"{self._wait:g} s; retry shortly"
                    )
                self._cond.wait(left)
        if dead is not None:
            _stop(dead)
        try:
            return self._start()
        except BaseException:
            self._forget()
            raise

    def _release(self, child: _Child) -> None:
        with self._cond:
            if not self._closed:
                self._idle.append(child)
                self._cond.notify()
                return
        self._discard(child)

    def _discard(self, child: _Child) -> None:
        """Stop `child` and start its replacement, both off the caller's thread."""
        threading.Thread(target=self._replace, args=(child,), daemon=True).start()

    def _replace(self, child: _Child) -> None:
        _stop(child)
        with self._cond:
            if self._closed:
                self._live -= 1
                self._cond.notify()
                return
        self._fill()

    def _fill(self) -> None:
        """Start a child for a slot already counted in `_live`, and lend it out."""
        try:
            fresh = self._start()
        except OutsideFailure as exc:
            log.warning("media sandbox: %s", exc.message)
            self._forget()
            return
        self._release(fresh)

    def _forget(self) -> None:
        with self._cond:
            self._live -= 1
            self._cond.notify()

    def _start(self) -> _Child:
        parent_end, child_end = self._mp.Pipe()
        process = self._mp.Process(
            target=_serve, args=(child_end,), name="hashdb-media", daemon=True
        )
        try:
            process.start()
        except OSError as exc:
            parent_end.close()
            raise OutsideFailure(f"cannot start a media process: {exc}") from exc
        finally:
            child_end.close()
        return _Child(process, parent_end)

    # -- one job --

    def _exchange(
        self,
        child: _Child,
        limits: JobLimits,
        job: Callable[..., Any],
        data: bytes,
        args: Any,
        kwargs: Any,
    ) -> tuple[str, Any, int, bool]:
        try:
            child.conn.send((job, args, kwargs, limits))
            child.conn.send_bytes(data)
            if not child.conn.poll(limits.wall_seconds):
                child.process.kill()
                raise _Lost(f"took longer than {limits.wall_seconds:g} s")
            reply: tuple[str, Any, int, bool] = child.conn.recv()
        except (EOFError, OSError):
            child.process.join(timeout=5)
            raise _Lost(_death(child.process.exitcode, limits)) from None
        return reply


def _idle_and_alive(child: _Child) -> bool:
    """Whether an idle child can take a job. An idle child never writes, so a readable
    pipe is its end-of-file: the kernel closes the pipe the moment the child dies, while
    `is_alive` waits for the fork server to reap it and report."""
    try:
        return child.process.is_alive() and not child.conn.poll(0)
    except (OSError, ValueError):
        return False


def _death(exitcode: int | None, limits: JobLimits) -> str:
    """Why a child died during a job, in words."""
    if exitcode == -signal.SIGXCPU:
        return f"exceeded the CPU limit of {limits.cpu_seconds:g} s"
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        if exitcode == -signal.SIGKILL:  # the OOM killer, or someone else
            return f"the decoder was killed on this file ({name})"
        return f"the decoder crashed on this file ({name})"
    return f"the decoder exited on this file (status {exitcode})"


def _stop(child: _Child) -> None:
    """Tell `child` to exit, and make sure it does."""
    with contextlib.suppress(OSError, ValueError):
        child.conn.close()  # an idle child reads end-of-file and returns
    child.process.join(timeout=2)
    if child.process.exitcode is None:
        child.process.kill()
        child.process.join(timeout=5)
    with contextlib.suppress(ValueError):
        child.process.close()


def _rebuild(module: str, qualname: str, message: str, fields: dict[str, Any]) -> HashdbError:
    """The child's typed error, as the same class in this process."""
    found: object = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    if not (isinstance(found, type) and issubclass(found, HashdbError)):
        return MediaError(message)
    exc = found.__new__(found)
    Exception.__init__(exc, message)
    exc.__dict__.update(fields)
    return exc


_FORKSERVER_LOCK = threading.Lock()


def _forkserver() -> multiprocessing.context.ForkServerContext:
    """The forkserver context, with the ingest modules preloaded and one BLAS thread.

    The forkserver is one per process and inherits the environment once, when it
    starts: the thread variables are set here (unless set already), which changes
    the processes this process starts from now on, not its own loaded libraries."""
    context = multiprocessing.get_context("forkserver")
    with _FORKSERVER_LOCK:
        for name in THREAD_VARIABLES:
            os.environ.setdefault(name, "1")
        context.set_forkserver_preload(PRELOAD)
    return context

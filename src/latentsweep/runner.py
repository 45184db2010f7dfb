"""Running a list of trials on an executor: one function, `run_trials`, for every kind.

Executors, all behind concurrent.futures' interface:
  in-process    the trials one after another in this process (one worker)
  processes     a local pool of worker processes, each with its share of the cores as torch threads
  dask          Dask distributed (`--executor dask`): a local cluster on 127.0.0.1, or a running
                one at `--scheduler`, through `Client.get_executor()`

Every executor runs `trial.trial_task`, which needs only the trial and the settings: it loads the
data and the evaluation reference itself, once per process. Results depend on the torch thread
count a trial runs with (rounding), never on the executor, so the arrangement is chosen from the
machine and recorded in config.json; the same command on the same machine gives the same bytes.

Why several single-thread processes by default: this small network's convolutions parallelise
poorly, and two single-thread trials at once used this project's 2-core CPU better than one
two-thread trial at a time (full study 13 min 55 s against 17 min 10 s, x1.23; docs/performance.md).

When a Dask worker dies mid-trial, Dask gives the task to another worker (up to its
`allowed-failures`, 3 by default), which resumes the trial from its last checkpoint. Local pool
workers die with the submitting process (Linux), so a killed study leaves nothing writing.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

from tqdm import tqdm

from latentsweep.config import StudyConfig
from latentsweep.errors import ConfigError
from latentsweep.layout import Trial
from latentsweep.trial import trial_task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Arrangement:
    """How the trials run: the executor, its worker processes and each one's torch threads."""

    executor: str  # "in-process", "processes", "dask-local" or "dask"
    workers: int | None  # None: a running Dask cluster decides
    threads: int | None  # torch threads per trial; None: torch's default (the physical cores)
    scheduler: str | None = None  # a running Dask cluster's address

    def describe(self) -> str:
        threads = f"{self.threads} torch thread(s)" if self.threads else "torch's default threads"
        if self.executor == "dask":
            return f"a running Dask cluster, {threads} per trial"
        where = {"in-process": "in this process", "processes": "local worker processes",
                 "dask-local": "a local Dask cluster"}[self.executor]
        return f"{self.workers} at a time, {where}, {threads} each" if self.workers and self.workers > 1 \
            else f"one at a time, {where}, {threads}"

    def to_dict(self) -> dict[str, Any]:
        """The fields, and the sentence that the report quotes (it reads files, not this class)."""
        return {**asdict(self), "description": self.describe()}


def choose_arrangement(config: StudyConfig, trial_count: int) -> Arrangement:
    """--workers and --threads where given; else one worker process per core (no more than trials),
    each with its share of the cores. One worker runs in this process."""
    execution = config.execution
    if execution.executor == "dask" and execution.scheduler is not None:
        return Arrangement("dask", None, execution.threads, execution.scheduler)
    cores = os.cpu_count() or 1
    workers = execution.workers or max(1, min(trial_count, cores))
    threads = execution.threads
    if threads is None and workers > 1:
        threads = max(1, cores // workers)
    if execution.executor == "dask":
        return Arrangement("dask-local", workers, threads or max(1, cores // workers))
    return Arrangement("in-process" if workers == 1 else "processes", workers, threads)


def run_trials(trials: list[Trial], config: StudyConfig, arrangement: Arrangement) -> list[dict[str, Any]]:
    """Run every trial on the arrangement's executor; return their status lines in the order of `trials`."""
    task_config = config.replace(**worker_paths(config), threads=arrangement.threads)
    in_worker = arrangement.executor != "in-process"
    statuses: dict[Trial, dict[str, Any]] = {}
    log.info("%d trial(s): %s", len(trials), arrangement.describe())
    with open_executor(arrangement) as executor, \
            tqdm(total=len(trials), desc="trials", unit="trial", disable=None if in_worker else True) as progress:
        futures = {}
        for trial in trials:
            future = executor.submit(worker_task, trial, task_config, in_worker)
            futures[future] = trial
        for future in concurrent.futures.as_completed(futures):
            trial = futures[future]
            statuses[trial] = collect(future, trial)
            log.info("%s: %s", trial.name, statuses[trial]["status"])
            progress.update(1)
    return [statuses[trial] for trial in trials]


def probes_per_round(variants: int, seeds: int, workers: int | None) -> int:
    """Probe sizes per variant in one round: the fewest that keep every worker busy to the round's end (one
    variant, three seeds, two workers: two sizes, six trials), at most one more than it takes to give each
    worker a trial. Every probe is trained at every seed."""
    per_size = max(1, variants * seeds)
    if not workers or workers <= 1:
        return 1

    def idle_share(count: int) -> float:
        trials = per_size * count
        return 1 - trials / (-(-trials // workers) * workers)

    return min(range(1, -(-workers // per_size) + 2), key=lambda count: (idle_share(count), count))


def worker_paths(config: StudyConfig) -> dict[str, str]:
    """Absolute paths: workers may start in other folders."""
    changes = {"out": str(config.out.resolve())}
    if config.data.data_dir is not None:
        changes["data_dir"] = str(Path(config.data.data_dir).expanduser().resolve())
    return changes


@contextlib.contextmanager
def open_executor(arrangement: Arrangement) -> Iterator[concurrent.futures.Executor]:
    if arrangement.executor == "in-process":
        yield InProcessExecutor()
    elif arrangement.executor == "processes":
        # spawn, not fork: a forked child of a process that already ran torch's thread pools can hang.
        with concurrent.futures.ProcessPoolExecutor(arrangement.workers, mp_context=multiprocessing.get_context("spawn"),
                                                    initializer=start_worker) as executor:
            yield executor
    else:
        with dask_client(arrangement) as client:
            yield client.get_executor(pure=False)


class InProcessExecutor(concurrent.futures.Executor):
    """Runs each task when it is submitted, in this process: one worker without a process to start."""

    def submit(self, fn, /, *args, **kwargs) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - the caller collects it as that trial's failure
            future.set_exception(exc)
        return future


def start_worker() -> None:
    """In each local worker process: die with the submitting process (Linux), so a killed study leaves
    no trial writing into the folder behind the next run's back. The death signal only covers a parent that dies
    after it is set: one killed while this worker was still starting (spawning takes seconds) is checked for here,
    or the worker would train on as an orphan (seen: a study killed two seconds after its start)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            pr_set_pdeathsig = 1  # from linux/prctl.h
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # adopted by init: the study is gone already
        os._exit(1)


def worker_task(trial: Trial, config: StudyConfig, in_worker: bool) -> dict[str, Any]:
    """trial.trial_task, after undoing a Dask default that halves PyTorch's speed on a CPU."""
    undo_malloc_trim_threshold()
    return trial_task(trial, config, in_worker)


def undo_malloc_trim_threshold() -> None:
    """Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536 (to return memory to the system
    sooner). Setting it also fixes glibc's mmap threshold at 128 KiB, so every batch-sized tensor is a
    fresh mmap and page faults: single-thread training ran at about half speed here (docs/performance.md).
    Large thresholds restore heap reuse; glibc only, and only when that variable is set."""
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: the variable means nothing there
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    libc.mallopt(m_mmap_threshold, 32 * 2**20)  # the largest glibc accepts
    libc.mallopt(m_trim_threshold, 256 * 2**20)


@contextlib.contextmanager
def dask_client(arrangement: Arrangement):
    """A Dask client: of a local cluster on the loopback interface, started and closed here, or of the
    running scheduler at `arrangement.scheduler`."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError('--executor dask: Dask is not installed; pip install "latentsweep[dask]"') from None
    # Importing distributed sets its loggers to INFO: some 35 lines of connection chatter per run that
    # would bury the study's own lines, even with -q. Its warnings and errors still show.
    logging.getLogger("distributed").setLevel(logging.WARNING)
    if arrangement.scheduler is not None:
        with connect(arrangement.scheduler) as client:
            log.info("Dask scheduler %s, %d workers", client.scheduler.address,
                     len(client.scheduler_info().get("workers", {})))
            yield client
        return
    log.info("starting a local Dask cluster: %d workers, %d torch threads each", arrangement.workers, arrangement.threads)
    # dashboard_address=None does not turn the dashboard off (dask/distributed#8136): it still takes
    # port 8787, or warns when that is in use. A random loopback port collides with nothing.
    with LocalCluster(n_workers=arrangement.workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        yield client


def connect(address: str):
    """A client of the scheduler at `address`; waits as long as Dask's `distributed.comm.timeouts.connect`
    (30 s unless configured, e.g. DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=5s)."""
    from distributed import Client

    try:
        return Client(address)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigError(f"--scheduler {address}: cannot connect ({exc})") from None


def collect(future: concurrent.futures.Future, trial: Trial) -> dict[str, Any]:
    """The task's status line; a task that raised, or whose workers kept dying, becomes a failure."""
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 - any error on a worker is that trial's failure, not the study's
        message = (f"its Dask worker died each time it ran ({exc})" if type(exc).__name__ == "KilledWorker"
                   else f"{type(exc).__name__}: {exc}")
    log.error("%s failed: %s", trial.name, message)
    return {"trial": trial.name, **trial.axes(), "status": "failed", "error": message}

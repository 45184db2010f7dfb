"""Running a study's trials on Dask distributed (`latentsweep run --executor dask`).

Each (latent size, seed) trial is one task, `sweep.trial_task`, which loads the data itself and
writes into the shared study folder; the scheduler only places tasks and retries them. When a
worker dies mid-trial, Dask gives the task to another worker (up to its `allowed-failures`, 3 by
default), and that worker resumes the trial from its last checkpoint, so nothing is lost and the
weights end as an uninterrupted run's.

Without `--scheduler`, a LocalCluster on the loopback interface is started and closed again: one
worker process per core (or `--workers`), each with one task slot and its share of the cores as
torch threads. With `--scheduler tcp://HOST:8786`, an existing cluster is used; every worker must
see the study folder and the data folder at the same paths (a shared filesystem).

Dask itself is an optional extra: `pip install "latentsweep[dask]"`.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

from tqdm import tqdm

from latentsweep.config import StudyConfig
from latentsweep.errors import ConfigError
from latentsweep.sweep import Trial, trial_task

log = logging.getLogger(__name__)

def run_on_dask(trials: list[Trial], config: StudyConfig) -> list[dict[str, Any]]:
    """Run every trial as a Dask task; return their status lines in the order of `trials`."""
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise ConfigError('--executor dask: Dask is not installed; pip install "latentsweep[dask]"') from None
    # Importing distributed sets its loggers to INFO: some 35 lines of connection chatter per run that
    # would bury the study's own lines, even with -q. Its warnings and errors still show.
    logging.getLogger("distributed").setLevel(logging.WARNING)
    config = worker_config(config, len(trials))
    cluster = None
    try:
        if config.scheduler is None:
            workers = local_workers(config, len(trials))
            log.info("starting a local Dask cluster: %d workers, %d torch threads each", workers, config.threads)
            # dashboard_address=None does not turn the dashboard off (dask/distributed#8136): it still
            # takes port 8787, or warns when that is in use. A random loopback port collides with nothing.
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address="127.0.0.1:0")
            client = Client(cluster)
        else:
            client = connect(config.scheduler)
        with client:
            log.info("Dask scheduler %s, %d workers", client.scheduler.address,
                     len(client.scheduler_info().get("workers", {})))
            futures = {client.submit(worker_task, trial, config, key=f"latentsweep-{trial.name}", pure=False): trial
                       for trial in trials}
            statuses: dict[Trial, dict[str, Any]] = {}
            with tqdm(total=len(trials), desc="trials", unit="trial", disable=None) as progress:
                for future in as_completed(futures):
                    trial = futures[future]
                    statuses[trial] = collect(future, trial)
                    log.info("%s: %s", trial.name, statuses[trial]["status"])
                    progress.update(1)
    finally:
        if cluster is not None:
            cluster.close()
    return [statuses[trial] for trial in trials]


def worker_task(trial: Trial, config: StudyConfig) -> dict[str, Any]:
    """sweep.trial_task, after undoing a Dask default that halves PyTorch's speed on a CPU."""
    undo_malloc_trim_threshold()
    return trial_task(trial, config)


def undo_malloc_trim_threshold() -> None:
    """Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536 (to return memory to the system
    sooner). Setting it also fixes glibc's mmap threshold at 128 KiB, so every batch-sized tensor is a
    fresh mmap and page faults: single-thread training ran at about half speed here (README, Speed).
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


def worker_config(config: StudyConfig, trial_count: int) -> StudyConfig:
    """The settings as a worker needs them: absolute paths (workers start in other folders) and,
    on a local cluster, the cores shared out, so that workers do not oversubscribe the machine."""
    changes: dict[str, Any] = {"out": str(Path(config.out).resolve())}
    if config.data_dir is not None:
        changes["data_dir"] = str(Path(config.data_dir).resolve())
    if config.scheduler is None and config.threads is None:
        changes["threads"] = max(1, (os.cpu_count() or 1) // local_workers(config, trial_count))
    return dataclasses.replace(config, **changes)


def local_workers(config: StudyConfig, trial_count: int) -> int:
    """Worker processes of the local cluster: --workers, else one per core but no more than trials."""
    return config.workers or min(trial_count, os.cpu_count() or 1)


def connect(address: str):
    """A client of the scheduler at `address`; waits as long as Dask's `distributed.comm.timeouts.connect`
    (30 s unless configured, e.g. DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=5s)."""
    from distributed import Client

    try:
        return Client(address)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigError(f"--scheduler {address}: cannot connect ({exc})") from None


def collect(future, trial: Trial) -> dict[str, Any]:
    """The task's status line; a task that raised, or whose workers kept dying, becomes a failure."""
    from distributed import KilledWorker

    try:
        return future.result()
    except KilledWorker as exc:
        message = f"its Dask worker died each time it ran ({exc})"
    except Exception as exc:  # noqa: BLE001 - any error on a worker is that trial's failure, not the study's
        message = f"{type(exc).__name__}: {exc}"
    log.error("%s failed: %s", trial.name, message)
    return {"trial": trial.name, "status": "failed", "error": message}

"""The Dask executor: real schedulers and workers on 127.0.0.1, results equal to a sequential run.

Every run here uses --threads 1, because results are bit-identical only at equal thread counts
(RELIABILITY.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from latentsweep.cli import main
from fault_injection import command as faulty_command

from conftest import IdxData, cli, generated_only, tiny_options
from test_architectures import EXAMPLES, TINY_RUN

distributed = pytest.importorskip("distributed")
# A real Dask scheduler and workers. On the generated data set only: where trials run is what these tests vary,
# not the images (real MNIST's end-to-end runs are in test_cli.py).
pytestmark = pytest.mark.slow

# 3 epochs: room to die after the 2nd. With --refine, so the probe rounds run on the executor too.
RUN = [*tiny_options(no_refine=None, refine=True), "--epochs", "3", "--threads", "1"]
# Everything a run writes that must not depend on where its trials ran.
COMPARED = ["results.csv", "results.json", *(f"models/{model}/{name}" for model in ("conv_beta1_latent002_seed0", "conv_beta1_latent004_seed0")
                                             for name in ("metrics.json", "per_image.csv", "history.csv"))]


@pytest.fixture(scope="module")
def sequential(idx_data, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"sequential-{idx_data.source}") / "study"
    assert main(["-q", "run", *data_options(idx_data), "--out", str(out), *RUN]) == 0
    return out


def data_options(data: IdxData) -> list[str]:
    return ["--data-dir", str(data.folder), *data.options]


def assert_same_results(study: Path, reference: Path) -> None:
    for name in COMPARED:
        if name.endswith("history.csv"):  # its seconds column is wall-clock time
            assert drop_seconds(study / name) == drop_seconds(reference / name), name
        else:
            assert (study / name).read_bytes() == (reference / name).read_bytes(), name


def drop_seconds(path: Path) -> list[list[str]]:
    rows = [line.split(",") for line in path.read_text().splitlines()]
    column = rows[0].index("seconds")
    return [row[:column] + row[column + 1:] for row in rows]


@generated_only
def test_local_dask_cluster_gives_the_sequential_results(idx_data, sequential, tmp_path):
    out = tmp_path / "study"
    with contextlib.ExitStack() as stack:
        with contextlib.suppress(OSError):  # if something else holds it already, the check holds all the same
            stack.enter_context(socket.create_server(("127.0.0.1", 8787)))  # Dask's default dashboard port
        result = cli("run", *data_options(idx_data), "--out", str(out), *RUN, "--executor", "dask", "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert "8787" not in result.stderr, "the local cluster must not reach for the default dashboard port"
    assert "Register worker" not in result.stderr and "Scheduler closing" not in result.stderr  # Dask's INFO chatter
    assert "starting a local Dask cluster: 2 workers, 1 torch threads each" in result.stderr
    assert_same_results(out, sequential)
    statuses = [t["status"] for t in json.loads((out / "summary.json").read_text())["trials"]]
    probes = json.loads((out / "config.json").read_text())["probes"]
    assert probes and probes == json.loads((sequential / "config.json").read_text())["probes"]
    assert statuses == ["done"] * (2 + len(probes))  # the grid's two trials, then one per probe (one seed)
    log = (out / "models" / "conv_beta1_latent004_seed0" / "trial.log").read_text()
    assert "epoch 3/3" in log  # the worker's progress is kept beside the model


def start(command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, **(env or {})})


def wait_for_workers(scheduler_file: Path, count: int) -> str:
    deadline = time.monotonic() + 60
    while not scheduler_file.exists():
        assert time.monotonic() < deadline, "the scheduler did not start"
        time.sleep(0.2)
    address = json.loads(scheduler_file.read_text())["address"]
    with distributed.Client(address, timeout=30) as client:
        client.wait_for_workers(count, timeout=60)
    return address


@generated_only
def test_a_worker_killed_mid_trial_is_retried_on_another_and_the_sweep_completes(idx_data, sequential, tmp_path):
    """A real scheduler and two real worker processes; worker A kills itself with SIGKILL halfway
    through writing a checkpoint (the reliability tests' fault hook), so its trial dies mid-training.
    The scheduler hands the trial to worker B, which resumes it from the last complete checkpoint."""
    scheduler_file = tmp_path / "scheduler.json"
    dask = [sys.executable, "-m", "distributed.cli.dask_worker"]
    processes = [start([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                        "--no-dashboard", "--scheduler-file", str(scheduler_file)])]
    try:
        worker_options = ["--scheduler-file", str(scheduler_file), "--nthreads", "1", "--no-nanny", "--no-dashboard"]
        processes.append(start(faulty_command(2, "distributed.cli.dask_worker", *worker_options, "--name", "doomed")))
        processes.append(start([*dask, *worker_options, "--name", "survivor"]))
        address = wait_for_workers(scheduler_file, 2)
        out = tmp_path / "study"
        result = cli("run", *data_options(idx_data), "--out", str(out), *RUN, "--executor", "dask", "--scheduler", address)
        assert processes[1].wait(timeout=5) == -signal.SIGKILL, "the doomed worker was never given a trial"
        assert processes[2].poll() is None
        assert result.returncode == 0, result.stderr
    finally:
        for process in processes:
            process.kill()
            process.wait()
    # The killed trial resumed from epoch 1's checkpoint and ended as if never interrupted.
    assert_same_results(out, sequential)


def test_a_worker_that_cannot_import_the_users_architecture_names_the_module(fake_data, tmp_path):
    """The submitting process finds examples/my_vae.py on its PYTHONPATH, the cluster's worker does not:
    the trial fails with the worker's import error, naming the module, and the run exits 1."""
    scheduler_file = tmp_path / "scheduler.json"
    bare = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    processes = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                   "--port", "0", "--no-dashboard", "--scheduler-file", str(scheduler_file)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=bare, cwd=tmp_path)]
    try:
        processes.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file",
                                           str(scheduler_file), "--nthreads", "1", "--no-dashboard"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=bare, cwd=tmp_path))
        address = wait_for_workers(scheduler_file, 1)
        result = cli("run", "--data-dir", str(fake_data), "--out", str(tmp_path / "study"), *TINY_RUN,
                     "--latent-dims", "2", "--architecture", "my_vae:build", "--executor", "dask", "--scheduler", address,
                     env={"PYTHONPATH": os.pathsep.join([str(EXAMPLES), os.environ.get("PYTHONPATH", "")])})
    finally:
        for process in processes:
            process.kill()
            process.wait()
    assert result.returncode == 1
    assert "my_vae-build_beta1_latent002_seed0 failed" in result.stderr
    assert "cannot import module 'my_vae'" in result.stderr and "PYTHONPATH" in result.stderr
    assert "Traceback" not in result.stderr


@generated_only
def test_unreachable_scheduler_is_a_one_line_error(idx_data, tmp_path):
    result = cli("run", *data_options(idx_data), "--out", str(tmp_path / "study"), *RUN,
                 "--executor", "dask", "--scheduler", "tcp://127.0.0.1:9", env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"})
    assert result.returncode == 2
    assert "--scheduler tcp://127.0.0.1:9: cannot connect" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("options, message", [
    (["--executor", "spark"], "--executor: 'spark' is not one of local, dask"),
    (["--scheduler", "tcp://127.0.0.1:8786"], "--scheduler: only used with --executor dask"),
    (["--executor", "dask", "--scheduler", "127.0.0.1"], "is not a scheduler address like tcp://HOST:8786"),
    (["--executor", "dask", "--workers", "0"], "--workers: must be at least 1"),
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:8786", "--executor", "dask"], "--workers: sets the number of local worker processes"),
])
def test_executor_options_are_checked(options, message, tmp_path, capsys):
    assert main(["run", "--out", str(tmp_path / "study"), *options]) == 2
    assert message in capsys.readouterr().err


FAULT_COUNT = """
import resource, torch
from latentsweep.runner import undo_malloc_trim_threshold


def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(200):
        torch.ones(256, 1024).sum()  # 1 MiB allocated and freed, as training does per batch
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

faults()
print(faults())
undo_malloc_trim_threshold()
faults()
print(faults())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_workers_undo_dasks_malloc_trim_setting_that_makes_every_batch_page_fault():
    result = subprocess.run([sys.executable, "-c", FAULT_COUNT], capture_output=True, text=True, check=True,
                            env={**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536"})  # as Dask's nanny sets it
    with_setting, undone = map(int, result.stdout.split())
    assert with_setting > 200 * 100  # each 1 MiB tensor is a fresh mmap: 256 pages faulted in
    assert undone < with_setting / 20


def test_a_local_worker_whose_study_died_while_it_started_exits_at_once(monkeypatch):
    """The death signal is set in the worker's initializer, seconds after the spawn: a study killed before that
    leaves the worker adopted by init, which start_worker sees and exits on (an orphan trained on otherwise)."""
    from latentsweep import runner

    class Parent:
        pid = 4242

    class Libc:  # the test process itself must not take a death signal
        def prctl(self, *arguments):
            return 0

    exits = []
    monkeypatch.setattr(runner.ctypes, "CDLL", lambda *arguments, **options: Libc())
    monkeypatch.setattr(runner.multiprocessing, "parent_process", lambda: Parent())
    monkeypatch.setattr(runner.os, "_exit", exits.append)
    monkeypatch.setattr(runner.os, "getppid", lambda: 1)  # the study is gone: init adopted the worker
    runner.start_worker()
    assert exits == [1]
    monkeypatch.setattr(runner.os, "getppid", lambda: 4242)  # the study is alive
    runner.start_worker()
    assert exits == [1]

"""Reliability promises (RELIABILITY.md), each proven by doing the real thing: SIGKILL of real
training processes, a real full filesystem, real damaged files, a real second process."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import idx_bytes, tiny_options, write_fake_dataset
from latentsweep.cli import main
from latentsweep.storage import LOCK_FILE
from fault_injection import command as faulty_command
from latentsweep.storage import state_dict_sha256
from latentsweep.train import load_checkpoint

pytestmark = pytest.mark.slow  # real processes killed, real workers, a real full disk

FAST_EVAL = tiny_options(evaluation_only=True, num_samples=4, generation_samples=100, iwae_samples=4, iwae_images=20,
                         tsne_points=60, representatives_per_class=2)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    # Enough images that an epoch takes a good fraction of a second, so a kill can land mid-epoch.
    return write_fake_dataset(tmp_path_factory.mktemp("data") / "fake", train=4000, test=200)


def train_args(data: Path, out: Path, epochs: int = 3, latent_dim: int = 2) -> list[str]:
    return ["train", "--data-dir", str(data), "--no-verify-data", "--out", str(out), "--latent-dim", str(latent_dim),
            "--epochs", str(epochs), "--val-size", "500", *FAST_EVAL]


def start(args: list[str], env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "latentsweep", "-q", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def finish(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "latentsweep", "-q", *args], capture_output=True, text=True,
                          timeout=600)


def weights_hash(folder: Path) -> str:
    return state_dict_sha256(load_checkpoint(folder / "last.pt")["model_state"])


def wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.02)


def history_rows(folder: Path) -> int:
    path = folder / "history.csv"
    return max(0, len(path.read_text().splitlines()) - 1) if path.is_file() else 0


# The kill-and-resume promises, with the schedule whose state a resume must restore (the cosine one sets every
# step's rate); test_train resumes both schedules bit-identically in-process, this checks a real kill.
SCHEDULES = {"cosine": ["--schedule", "cosine", "--warmup-fraction", "0.2", "--learning-rate", "0.003"]}


@pytest.fixture(scope="module", params=list(SCHEDULES))
def schedule(request) -> list[str]:
    return SCHEDULES[request.param]


@pytest.fixture(scope="module")
def uninterrupted(data, schedule, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("straight") / "run"
    result = finish(train_args(data, out) + schedule)
    assert result.returncode == 0, result.stderr
    return weights_hash(out)


# --- 1. Kill and resume -----------------------------------------------------------------------

def test_sigkill_mid_epoch_then_resume_is_bit_identical(data, schedule, tmp_path, uninterrupted):
    out = tmp_path / "run"
    process = start(train_args(data, out) + schedule)
    wait_for(lambda: history_rows(out) >= 1)  # epoch 1 is checkpointed ...
    time.sleep(0.2)                            # ... and epoch 2 is under way
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (out / "DONE").exists() and history_rows(out) < 3
    result = finish(train_args(data, out) + schedule + ["--resume"])
    assert result.returncode == 0, result.stderr
    assert weights_hash(out) == uninterrupted


def test_sigkill_during_a_checkpoint_write_keeps_the_previous_one_and_resumes_bit_identical(data, schedule, tmp_path,
                                                                                           uninterrupted):
    out = tmp_path / "run"
    process = subprocess.Popen(faulty_command(2, "latentsweep", "-q", *train_args(data, out), *schedule), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    process.wait(timeout=600)
    assert process.returncode == -signal.SIGKILL
    leftovers = list(out.glob(".last.pt.*"))
    assert leftovers, "the write was interrupted, so its temporary file is still there"
    assert load_checkpoint(out / "last.pt")["epoch"] == 1  # the previous checkpoint is intact and loads
    result = finish(train_args(data, out) + schedule + ["--resume"])
    assert result.returncode == 0, result.stderr
    assert not list(out.glob(".last.pt.*"))  # cleaned at start
    assert weights_hash(out) == uninterrupted


def sweep_args(data: Path, out: Path) -> list[str]:
    return ["run", "--data-dir", str(data), "--no-verify-data", "--out", str(out), "--latent-dims", "2,3", "--seeds", "0",
            "--epochs", "3", "--val-size", "500", "--no-refine", "--no-check-training", "--no-extend", *FAST_EVAL]


def refine_args(data: Path, out: Path) -> list[str]:
    """Grid sizes 2 and 5: whatever the grid answers, a probe follows (1 under 2, or 3 or 4 between)."""
    return ["run", "--data-dir", str(data), "--no-verify-data", "--out", str(out), "--latent-dims", "2,5", "--seeds", "0",
            "--epochs", "3", "--val-size", "500", "--refine", "--no-check-training", "--no-extend", *FAST_EVAL]


def probe_training(out: Path) -> bool:
    """A probe is recorded in config.json and its first epoch is checkpointed."""
    config = out / "config.json"
    try:
        probes = json.loads(config.read_text()).get("probes", []) if config.is_file() else []
    except json.JSONDecodeError:  # written atomically, but read while it is replaced
        return False
    return bool(probes) and history_rows(out / "models" / f"conv_beta1_latent{probes[0]['latent_dim']:03d}_seed0") >= 1


def test_sigkill_during_a_probe_then_a_plain_rerun_is_bit_identical(data, tmp_path):
    """Killed while the refinement's first probe trains, the same command again takes over the stale lock and
    ends with the uninterrupted study's probes, weights and byte-identical results."""
    straight = tmp_path / "straight"
    assert finish(refine_args(data, straight)).returncode == 0
    out = tmp_path / "killed"
    process = start(refine_args(data, out))
    wait_for(lambda: probe_training(out), timeout=300)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (out / LOCK_FILE).exists()  # left behind by the killed process: a stale lock
    result = finish(refine_args(data, out))
    assert result.returncode == 0, result.stderr
    probes = json.loads((out / "config.json").read_text())["probes"]
    assert probes and probes == json.loads((straight / "config.json").read_text())["probes"]
    models = sorted(folder.name for folder in (straight / "models").iterdir())
    assert len(models) == 2 + len(probes) and models == sorted(folder.name for folder in (out / "models").iterdir())
    for name in models:
        assert weights_hash(out / "models" / name) == weights_hash(straight / "models" / name), name
    for name in ("results.json", "results.csv"):
        assert (out / name).read_bytes() == (straight / name).read_bytes(), name
    assert not (out / LOCK_FILE).exists()


def test_local_worker_processes_die_with_a_killed_study(data, tmp_path):
    """Promise 1: SIGKILL the study while two local worker processes train; a few seconds later none is alive."""
    psutil = pytest.importorskip("psutil")  # installed with the dev extra (dask distributed needs it)
    out = tmp_path / "study"
    process = start(sweep_args(data, out) + ["--workers", "2", "--threads", "1"])
    models = [out / "models" / name for name in ("conv_beta1_latent002_seed0", "conv_beta1_latent003_seed0")]
    wait_for(lambda: all(history_rows(model) >= 1 for model in models))  # both trials are training
    workers = [child for child in psutil.Process(process.pid).children(recursive=True)
               if "spawn_main" in " ".join(child.cmdline())]
    assert len(workers) == 2, [child.cmdline() for child in workers]
    process.send_signal(signal.SIGKILL)
    process.wait()
    gone, alive = psutil.wait_procs(workers, timeout=5)
    assert not alive, [worker.pid for worker in alive]


# --- 3. Disk full -----------------------------------------------------------------------------

@pytest.fixture
def tiny_filesystem(tmp_path):
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=15m", "tmpfs", str(mount_point)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.decode().strip() or 'not permitted'}); "
                    "the injected-ENOSPC test covers the same path")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], capture_output=True)


def test_a_full_disk_stops_training_with_a_clear_message_and_the_last_checkpoint_loads(data, tiny_filesystem):
    out = tiny_filesystem / "run"
    result = finish(train_args(data, out, epochs=6))
    assert result.returncode == 1, result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"latentsweep: error: {out}") and "No space left on device" in last_line
    assert "Traceback" not in result.stderr
    checkpoint = load_checkpoint(out / "last.pt")
    assert 1 <= checkpoint["epoch"] < 6


def test_an_injected_enospc_is_reported_and_keeps_the_previous_checkpoint(data, tmp_path, monkeypatch, capsys):
    import latentsweep.storage as storage

    out = tmp_path / "run"
    real_fsync, calls = os.fsync, []

    def failing_fsync(fd):
        calls.append(fd)
        if os.readlink(f"/proc/self/fd/{fd}").rsplit("/", 1)[-1].startswith(".last.pt") and len(calls) > 6:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(storage.os, "fsync", failing_fsync)
    assert main(train_args(data, out, epochs=6)) == 1
    assert "last.pt: could not write: No space left on device" in capsys.readouterr().err
    assert load_checkpoint(out / "last.pt")["epoch"] >= 1
    assert not list(out.glob(".last.pt.*"))


# --- 4. Bad input through the command line -----------------------------------------------------

def damaged_copy(source: Path, target: Path, name: str, content: bytes) -> Path:
    target.mkdir(parents=True)
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    (target / name).write_bytes(content)
    return target


TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"


@pytest.mark.parametrize("name, make, message", [
    # The loader's damage cases, each through the command: one line naming the file, exit 2. (The parser's own
    # cases, on bytes, are test_data.test_parse_idx_rejects_damage_with_a_message_naming_the_file.)
    (TEST_IMAGES, lambda good: good[: len(good) // 2], "damaged gzip data"),
    (TEST_IMAGES, lambda good: b"", "too short for an IDX header (0 bytes)"),  # an empty .gz holds nothing
    ("t10k-images-idx3-ubyte", None, "too short for an IDX header"),
    (TEST_IMAGES, "magic", "wrong magic number"),
    (TEST_IMAGES, "dtype", "unknown IDX data type code 0x0a"),
    (TEST_LABELS, "count", "7 labels for 200 images"),
    (TEST_LABELS, "range", "label 11 outside 0-9"),
    (TEST_IMAGES, "truncated-idx", "truncated"),
], ids=["truncated-gzip", "empty-gzip", "empty-plain", "magic", "dtype", "count", "label-range", "truncated-idx"])
def test_damaged_data_files_give_one_line_and_exit_2(data, tmp_path, capsys, name, make, message):
    import gzip

    good = (data / TEST_IMAGES).read_bytes()
    if make is None:  # an empty uncompressed file beside the others (the .gz is removed so it is used)
        folder = damaged_copy(data, tmp_path / "d", name, b"")
        (folder / TEST_IMAGES).unlink()
    elif isinstance(make, str):
        raw = bytearray(gzip.decompress(good))
        if make == "magic":
            raw[0] = 0x12
        elif make == "dtype":
            raw[2] = 0x0A
        elif make == "truncated-idx":
            raw = raw[:-100]
        if make == "count":
            content = gzip.compress(idx_bytes(np.zeros(7, np.uint8)))
        elif make == "range":
            content = gzip.compress(idx_bytes(np.full(200, 11, np.uint8)))
        else:
            content = gzip.compress(bytes(raw))
        folder = damaged_copy(data, tmp_path / "d", name, content)
    else:
        folder = damaged_copy(data, tmp_path / "d", name, make(good))
    code = main(["run", "--data-dir", str(folder), "--no-verify-data", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert str(folder / name) in err  # the file is named


def test_a_checkpoint_of_another_size_is_refused(data, tmp_path, capsys):
    """(Damaged checkpoints: test_train.test_damaged_checkpoints_are_one_line_errors_naming_the_file.)"""
    out = tmp_path / "run"
    assert main(train_args(data, out, epochs=1)) == 0
    capsys.readouterr()
    assert main(train_args(data, out, epochs=2, latent_dim=3) + ["--resume"]) == 2
    err = capsys.readouterr().err
    assert "made for another model" in err and err.count("\n") == 1


def test_a_folder_being_written_by_a_live_process_is_refused(data, tmp_path, capsys):
    out = tmp_path / "study"
    out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import socket

        (out / LOCK_FILE).write_text(f"{sleeper.pid} {socket.gethostname()}\n")
        code = main(sweep_args(data, out))
        err = capsys.readouterr().err
        assert code == 1 and f"being written by latentsweep process {sleeper.pid}" in err and err.count("\n") == 1
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_stale_lock_is_taken_over(data, tmp_path):
    import socket

    out = tmp_path / "run"
    out.mkdir()
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / LOCK_FILE).write_text(f"{finished.stdout.strip()} {socket.gethostname()}\n")  # that pid has exited
    assert main(train_args(data, out, epochs=1)) == 0
    assert not (out / LOCK_FILE).exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders, so the case cannot arise as root")
def test_a_read_only_output_folder_is_refused(data, tmp_path, capsys):
    out = tmp_path / "readonly"
    out.mkdir()
    out.chmod(0o500)
    try:
        assert main(sweep_args(data, out / "study")) == 2
        assert "cannot create the folder" in capsys.readouterr().err
    finally:
        out.chmod(0o700)


# --- 6. Determinism ---------------------------------------------------------------------------

def test_the_same_command_twice_gives_identical_metrics_files(data, tmp_path):
    """Two fresh processes, as a user runs the command twice (no per-process cache is warm for the second)."""
    for name in ("a", "b"):
        result = finish(sweep_args(data, tmp_path / name))
        assert result.returncode == 0, result.stderr
    for relative in ["results.csv", "results.json", "models/conv_beta1_latent002_seed0/metrics.json",
                     "models/conv_beta1_latent003_seed0/metrics.json", "models/conv_beta1_latent003_seed0/per_image.csv"]:
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes(), relative

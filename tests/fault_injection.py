"""Run a Python module as __main__ with a fault injected, for the reliability tests.

    python tests/fault_injection.py EPOCH MODULE [ARGS...]

The process kills itself with SIGKILL halfway through writing last.pt after epoch EPOCH, as a power
cut or the OOM killer would. The hook lives here, not in latentsweep: it wraps train.save_last_checkpoint.
"""

from __future__ import annotations

import io
import os
import runpy
import signal
import sys

import torch

import latentsweep.train as train
from latentsweep.storage import atomic_write

HERE = os.path.abspath(__file__)


def kill_in_checkpoint_write(epoch: int) -> None:
    real = train.save_last_checkpoint

    def dying(checkpoint, path):
        if checkpoint["epoch"] == epoch:
            buffer = io.BytesIO()
            torch.save(checkpoint, buffer)
            data = buffer.getvalue()

            def write_half_then_die(handle) -> None:
                handle.write(data[: len(data) // 2])
                handle.flush()
                os.kill(os.getpid(), signal.SIGKILL)

            atomic_write(path, write_half_then_die)
        real(checkpoint, path)

    train.save_last_checkpoint = dying


def command(epoch: int, module: str, *args: str) -> list[str]:
    """The command line that runs `python -m module args` with the fault at `epoch`."""
    return [sys.executable, HERE, str(epoch), module, *args]


if __name__ == "__main__":
    kill_in_checkpoint_write(int(sys.argv[1]))
    module = sys.argv[2]
    sys.argv = [module, *sys.argv[3:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)

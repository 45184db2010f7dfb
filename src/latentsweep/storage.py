"""Atomic file writes and small readers.

Every file the tool writes goes to a temporary file in the same folder, is flushed to disk
and then renamed over the target, so a kill or a full disk leaves either the old file or the
new one, never half of one.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch

from latentsweep.errors import LatentsweepError

TEMP_SUFFIX = ".tmp-latentsweep"


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some filesystems do not allow opening folders; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[io.BufferedWriter], None]) -> None:
    """Call `write(file)` on a temporary file beside `path`, then rename it to `path`.

    Any OS error (a missing or read-only folder, a full disk) becomes a LatentsweepError naming
    the file; the previous version of `path`, if any, is untouched.
    """
    path = Path(path)
    temp_name = None
    try:
        fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException as exc:
        if temp_name is not None:
            try:
                os.unlink(temp_name)
            except FileNotFoundError:
                pass
        if isinstance(exc, OSError):
            raise LatentsweepError(f"{path}: could not write: {exc.strerror or exc}") from exc
        raise
    _fsync_folder(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _json_safe(value: Any) -> Any:
    """NaN and infinity are not JSON; write them as null so every reader can parse the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(_json_safe(data), indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LatentsweepError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LatentsweepError(f"{path}: not valid JSON ({exc})") from None


def write_csv(path: str | Path, rows: Iterable[Mapping[str, Any]], fieldnames: list[str]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fieldnames, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _format_cell(row.get(key)) for key in fieldnames})
    atomic_write_text(path, buffer.getvalue())


def _format_cell(value: Any) -> Any:
    if isinstance(value, float):
        return "" if not math.isfinite(value) else repr(value)
    return "" if value is None else value


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    # Serialise in memory first: torch.save reports a failed file write (a full disk) as a bare
    # RuntimeError from its zip writer, while a plain file write raises OSError(ENOSPC), which
    # atomic_write turns into a one-line message.
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def atomic_savez(path: str | Path, **arrays: Any) -> None:
    """numpy's compressed .npz, written atomically."""
    import numpy as np

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def remove_temp_files(folder: str | Path) -> list[Path]:
    """Delete temporary files left by writes that were interrupted; returns what was removed."""
    folder = Path(folder)
    removed = []
    if folder.is_dir():
        for leftover in folder.glob(f".*{TEMP_SUFFIX}"):
            leftover.unlink(missing_ok=True)
            removed.append(leftover)
    return removed


# ----------------------------------------------------------------------------------------
# One writer per folder

LOCK_FILE = "latentsweep.lock"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


class FolderLock:
    """Marks a folder as being written by this process: a lock file holding the owner's pid and host.

    A second latentsweep process that finds the lock of a live process stops with a clear message;
    a lock whose process is gone (killed, machine rebooted) is stale and is taken over.
    """

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / LOCK_FILE
        self.held = False

    def __enter__(self) -> "FolderLock":
        import socket

        owner = f"{os.getpid()} {socket.gethostname()}\n"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid, host = self._owner()
                if pid is not None and host == socket.gethostname() and _process_alive(pid) and pid != os.getpid():
                    raise LatentsweepError(f"{self.path.parent}: being written by latentsweep process {pid} "
                                           f"(lock file {self.path}); wait for it to finish, or delete the lock "
                                           "file if that process is gone")
                if pid is not None and host != socket.gethostname():
                    raise LatentsweepError(f"{self.path.parent}: locked by a latentsweep process on host {host} "
                                           f"(lock file {self.path}); delete it if that run is over")
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            except OSError as exc:
                raise LatentsweepError(f"{self.path.parent}: cannot write there ({exc.strerror or exc})") from None
            with os.fdopen(fd, "w") as handle:
                handle.write(owner)
            self.held = True
            return self
        raise LatentsweepError(f"{self.path}: could not take the lock")

    def _owner(self) -> tuple[int | None, str | None]:
        try:
            pid_text, host = self.path.read_text().split()[:2]
            return int(pid_text), host
        except (OSError, ValueError):
            return None, None

    def __exit__(self, *exc_info: object) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def state_dict_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the names and exact bytes of every tensor: equal hashes mean bit-identical weights."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()

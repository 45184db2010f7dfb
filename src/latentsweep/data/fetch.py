"""Where a data set's files are, and fetching them: the folder rules every data set shares (--data-dir, else
$LATENTSWEEP_DATA_DIR, else the user cache, filled by downloading), the download helper, and reading a file
whether or not it is gzip-compressed."""

from __future__ import annotations

import gzip
import os
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Callable

from latentsweep.errors import DataError

ENV_DATA_DIR = "LATENTSWEEP_DATA_DIR"


def read_file_bytes(path: Path) -> bytes:
    """The file's content, decompressed if its name ends in .gz."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected an IDX file") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: damaged gzip data ({exc or 'truncated'})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None


def cache_root() -> Path:
    """~/.cache/latentsweep, or $XDG_CACHE_HOME/latentsweep."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "latentsweep"


def default_cache_dir(dataset: str) -> Path:
    return cache_root() / "datasets" / dataset


def find_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


Opener = Callable[..., "urllib.response.addinfourl"]


def fetch_first(urls: list[str] | tuple[str, ...], check: Callable[[bytes], str | None], opener: Opener,
                timeout: float) -> tuple[bytes | None, list[str]]:
    """The content of the first URL that serves bytes `check` accepts (it returns None, or what is wrong with
    them), and why each URL before it failed; (None, every failure) when none does."""
    failures = []
    for url in urls:
        try:
            with opener(url, timeout=timeout) as response:
                content = response.read()
            problem = check(content)
        except (urllib.error.URLError, OSError, EOFError, zlib.error) as exc:
            failures.append(f"{url}: {getattr(exc, 'reason', None) or exc}")
            continue
        if problem is None:
            return content, failures
        failures.append(f"{url}: {problem}")
    return None, failures


def find_data_folder(name: str, data_dir: str | Path | None, holds_data: Callable[[Path], bool],
                     what_is_missing: Callable[[Path], str], download: Callable[[Path], object]) -> Path:
    """The rules of resolve_data_dir for any data set: `holds_data(folder)` says whether a folder has it,
    `what_is_missing(folder)` ends the error where a named folder does not, `download(folder)` fills the cache."""
    named = data_dir if data_dir not in (None, "") else os.environ.get(ENV_DATA_DIR) or None
    if named is not None:
        folder = Path(named).expanduser()
        origin = "--data-dir" if data_dir not in (None, "") else f"${ENV_DATA_DIR}"
        if not folder.exists():
            raise DataError(f"{folder} ({origin}): folder does not exist")
        if not folder.is_dir():
            raise DataError(f"{folder} ({origin}): not a folder")
        if holds_data(folder):
            return folder
        nested = folder / name
        if nested.is_dir() and holds_data(nested):
            return nested
        raise DataError(f"{folder} ({origin}): no {name} data; {what_is_missing(folder)}")
    folder = default_cache_dir(name)
    if not holds_data(folder):
        download(folder)
    return folder

import json
import math

import pytest
import torch

from latentsweep.errors import LatentsweepError
from latentsweep.storage import (TEMP_SUFFIX, atomic_torch_save, atomic_write, atomic_write_text, read_json,
                                 remove_temp_files, write_csv, write_json)


def test_an_interrupted_write_leaves_the_previous_file_intact_and_no_temp_file(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"psnr": 20.0})

    def half_then_fail(handle):
        handle.write(b'{"psnr": 1')
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, half_then_fail)
    assert read_json(target) == {"psnr": 20.0}
    assert list(tmp_path.iterdir()) == [target]


def test_leftover_temp_files_are_removed(tmp_path):
    (tmp_path / f".last.pt.abc{TEMP_SUFFIX}").write_bytes(b"partial")
    (tmp_path / "keep.txt").write_text("x")
    removed = remove_temp_files(tmp_path)
    assert [p.name for p in removed] == [f".last.pt.abc{TEMP_SUFFIX}"]
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_json_writes_nan_as_null_and_reads_back(tmp_path):
    write_json(tmp_path / "a.json", {"values": [1.0, math.nan, math.inf], "nested": {"x": -math.inf}})
    assert json.loads((tmp_path / "a.json").read_text()) == {"values": [1.0, None, None], "nested": {"x": None}}


def test_read_json_errors_name_the_file(tmp_path):
    with pytest.raises(LatentsweepError, match="missing.json: file not found"):
        read_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(LatentsweepError, match="bad.json: not valid JSON"):
        read_json(tmp_path / "bad.json")


def test_csv_and_torch_saves(tmp_path):
    write_csv(tmp_path / "t.csv", [{"a": 1, "b": 0.5}, {"a": 2, "b": math.nan}], ["a", "b"])
    assert (tmp_path / "t.csv").read_text() == "a,b\n1,0.5\n2,\n"
    atomic_torch_save({"w": torch.ones(2)}, tmp_path / "x.pt")
    assert torch.equal(torch.load(tmp_path / "x.pt")["w"], torch.ones(2))


def test_writing_into_a_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(LatentsweepError, match="could not write"):
        atomic_write_text(tmp_path / "no" / "such" / "file.txt", "x")

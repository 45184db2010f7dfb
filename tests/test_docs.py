"""The documents name tests and modules that exist, so a rename cannot leave them pointing nowhere."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_test_reliability_md_names_exists():
    text = (ROOT / "RELIABILITY.md").read_text()
    named = re.findall(r"`(test_\w+\.py)((?:::\w+)?)`", text)
    assert len(named) > 20
    file = None
    for file_name, function in named:
        file = ROOT / "tests" / file_name
        assert file.is_file(), file_name
        if function:
            assert re.search(rf"^def {function[2:]}\(", file.read_text(), re.M), f"{file_name}{function}"
    # Short references (`::name`) point into the file named last before them on the same row.
    for row in text.splitlines():
        current = None
        for match in re.finditer(r"`(test_\w+\.py)?::(\w+)`", row):
            current = match.group(1) or current
            assert current, f"no file before ::{match.group(2)}"
            assert re.search(rf"^def {match.group(2)}\(", (ROOT / "tests" / current).read_text(), re.M), \
                f"{current}::{match.group(2)}"


def test_the_readmes_module_table_lists_every_module():
    readme = (ROOT / "README.md").read_text()
    listed = set(re.findall(r"`(\w+)\.py`", readme))
    modules = {path.stem for path in (ROOT / "src" / "latentsweep").glob("*.py")} - {"__init__", "__main__", "errors",
                                                                                     "storage"}
    assert modules <= listed, sorted(modules - listed)

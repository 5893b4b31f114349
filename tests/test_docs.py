"""Docs that cannot drift: docs/architecture.md maps every module of clear_core/ and names only functions that
exist, and README.md documents every subcommand (datasette tests its docs the same way)."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys

import pytest

from clear_core import cli
from tests.conftest import REPO

ARCHITECTURE = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
README = (REPO / "README.md").read_text(encoding="utf-8")
MODULES = sorted(path.stem for path in (REPO / "clear_core").glob("*.py"))
# `worker.log`, `data.py`: file names, not attributes
FILE_SUFFIXES = {"py", "json", "jsonl", "log", "md", "pid", "duckdb", "csv", "parquet", "svg"}


def module_table() -> dict[str, str]:
    """The "Modules" table of architecture.md: each module file named in a row's first cell -> the row's last cell."""
    section = ARCHITECTURE.split("## Modules", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 3:
            for name in re.findall(r"`([\w]+)\.py`", cells[0]):
                rows[name] = cells[-1]
    return rows


def named_functions() -> set[str]:
    """Every `module.name` and `Store.name` in architecture.md whose module is one of clear_core's."""
    found = set()
    for owner, name in re.findall(r"\b(\w+)\.(\w+)\b", ARCHITECTURE):
        if (owner in MODULES or owner == "Store") and name not in FILE_SUFFIXES:
            found.add(f"{owner}.{name}")
    return found


def test_every_module_is_in_the_architecture_map():
    assert sorted(set(MODULES) - set(module_table())) == []


def test_the_map_names_no_module_that_is_gone():
    assert sorted(set(module_table()) - set(MODULES)) == []


@pytest.mark.parametrize("dotted", sorted(named_functions()))
def test_every_function_the_map_names_exists(dotted):
    owner, name = dotted.split(".")
    if owner == "Store":
        from clear_core.store import Store as target
    else:
        target = importlib.import_module(f"clear_core.{owner}")
    assert hasattr(target, name), f"docs/architecture.md names {dotted}, which does not exist"


def test_the_map_names_the_functions_of_the_hand_off():
    assert {"data.load_dataset", "handoff.prepare_run_dir", "runs.ingest", "Store.add_scores"} <= named_functions()


def test_modules_marked_torch_free_import_no_torch():
    """The "imports torch?" column is true: the modules marked "no" load neither torch nor transformers."""
    free = sorted(name for name, torch in module_table().items() if torch.startswith("no") and name != "__main__")
    assert "store" in free and "model" not in free
    code = f"import sys, {', '.join(f'clear_core.{name}' for name in free)}; "
    code += "loaded = {'torch', 'transformers'} & set(sys.modules); assert not loaded, loaded"
    subprocess.run([sys.executable, "-c", code.replace("clear_core.__init__", "clear_core")], cwd=REPO, check=True)


def test_every_subcommand_is_in_the_readme_and_the_map():
    commands = sorted(cli.main.commands)
    assert "score" in commands
    for command in commands:
        assert re.search(rf"^- `{command}\b", README, re.MULTILINE), f"README.md does not document `{command}`"
    listed = re.search(r"`python -m clear_core ([\w|]+)`", ARCHITECTURE).group(1)
    assert sorted(listed.split("|")) == commands

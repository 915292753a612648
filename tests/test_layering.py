"""The layering contract (pyproject.toml, `[tool.importlinter]`) holds on the code,
and it is a real guard: an edge that imports the store, or a `hashdb` module that
imports an edge, breaks it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("hashdb", "api", "ingest")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the packages' sources and the contract, to break on purpose."""
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.pyc", "static")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_code_keeps_the_contract(tree: Path) -> None:
    result = lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("module", "line"),
    [
        ("api/vetting.py", "from hashdb.store import Store"),
        ("api/console/review.py", "import hashdb.store.schema"),
        ("hashdb/cli/members.py", "from hashdb.store.members import MemberStore"),
        ("ingest/records.py", "from hashdb.matching import Matcher"),
        ("hashdb/consortium/vetting.py", "import api.app"),
    ],
)
def test_an_edge_reaching_past_the_layer_breaks_the_contract(
    tree: Path, module: str, line: str
) -> None:
    with (tree / module).open("a") as source:
        source.write(f"\n{line}  # noqa\n")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout


INTERNALS = re.compile(r"(?<!hashdb)\.(store|matcher|tally|limiter)\b")


def test_no_edge_reaches_into_the_consortiums_internals() -> None:
    """The Consortium keeps its store, matcher, tally and rate limiter for tests and
    benchmarks; an edge only calls its topic objects."""
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for package in ("api", "ingest", "hashdb/cli")
        for path in sorted((ROOT / package).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if INTERNALS.search(line.split("#")[0])
    ]
    assert found == []

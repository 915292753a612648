"""Running a script in a fresh interpreter, as a server's process would start.

Some specifications are about a whole process (what a server's master leaves
behind before it forks, how a worker's garbage collector is set): they run a
script with `python -c` from the repository root, so this test process is neither
measured nor changed, and read the JSON object the script prints last.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_script(script: str, *args: str, env: Mapping[str, str]) -> dict[str, object]:
    """Run `script` with `args` in a fresh interpreter under `env`; the JSON object
    on its last line of output. A failing script fails the test with its stderr."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result

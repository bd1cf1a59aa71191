"""The README's commands and library example work as written."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from supervisor.testing import free_port
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_first_lines_give_the_demo_and_the_test_command() -> None:
    block = README.split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert block[0].endswith(".venv/bin/python -m supervisor demo")
    assert block[1] == "bash .ci/run"
    ci = (ROOT / ".ci" / "run").read_text()
    stated = re.search(r"Its test command is\s+`([^`]+)`", README)
    assert stated, "the README must say which command runs the tests"
    command = " ".join(stated.group(1).split())
    assert command == ".venv/bin/python -m pytest -n 2 --dist loadgroup"
    assert f"{command} --durations=25" in ci  # the README's tests, slowest shown


@pytest.mark.process
def test_library_example_runs_as_written() -> None:
    code = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    code = code.replace("30000", str(free_port()))
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stdout + done.stderr
    states = [line for line in done.stdout.splitlines() if line.startswith("State.")]
    assert states == ["State.SERVING", "State.DEAD"]

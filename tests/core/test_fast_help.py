"""`python -m <entry point> --help` answers before torch or matplotlib is imported (seconds of
a command's start on a CPU machine): an entry point imports what its work needs once its flags
are parsed (harness/core/cli.py)."""
import subprocess
import sys

import pytest

from tests.core.test_cli import ENTRY_POINTS, ENV, ROOT

HEAVY = ("torch", "matplotlib")
# --help run as `python -m` runs it, then the heavy packages it imported, on the last line
SCRIPT = """import runpy, sys
name, heavy = sys.argv[1], set(sys.argv[2:])
sys.argv = [name, "--help"]
try:
    runpy.run_module(name, run_name="__main__", alter_sys=True)
except SystemExit as exit_:
    assert exit_.code in (0, None), exit_.code
print(sorted({module.partition(".")[0] for module in sys.modules} & heavy))"""


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_help_imports_neither_torch_nor_matplotlib(name, tmp_path):
    result = subprocess.run([sys.executable, "-c", SCRIPT, name, *HEAVY], cwd=tmp_path,
                            env={**ENV, "PYTHONPATH": str(ROOT)}, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"usage: python -m {name} " in result.stdout
    assert result.stdout.splitlines()[-1] == "[]", result.stdout.splitlines()[-1]

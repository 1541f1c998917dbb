"""A method of one's own package (README § Methods, "Adding a method"): the README's worked
example, written into a folder outside the checkout, trains through `--module` and the loss
seam, and its run records the module for `--resume` (as gin's `import`, parsed before the
files); a module that cannot be imported, or one never imported, is one clear error."""
import json
import math
import re
import subprocess
import sys

import pytest

from harness.core import cli
from harness.core.errors import UserError
from harness.experiment.config import parse
from tests.core.test_cli import ENV, ROOT

MODULE = "my_methods.focal"


def readme_block(first_line: str) -> str:
    """The README's fenced block that begins with `first_line`."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return next(block for block in blocks if block.startswith(first_line))


def run(*args, path):
    return subprocess.run([sys.executable, "-m", "harness.run", *args], cwd=ROOT,
                          env={**ENV, "PYTHONPATH": str(path)}, capture_output=True, text=True,
                          timeout=300)


def test_the_readme_method_trains_through_module_and_its_loss_seam(tmp_path):
    package = tmp_path / "my_methods"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "focal.py").write_text(readme_block("# my_methods/focal.py"))
    (tmp_path / "focal.gin").write_text(readme_block("# focal.gin"))
    out = tmp_path / "run"
    result = run(f"--module={MODULE}", f"--gin_file={tmp_path / 'focal.gin'}",
                 f"--gin_file={ROOT / 'gin' / 'scale' / 'smoke.gin'}",
                 "--gin_bindings=FocalDense.gamma = 5.0", "--gin_bindings=Experiment.suites = "
                 "('test',)", "--gin_bindings=Experiment.train_subset = 64",
                 "--gin_bindings=epoch_factor.factor = 0.004", f"--output_dir={out}",
                 "--noprogress", path=tmp_path)
    assert result.returncode == 0, result.stderr
    # One step from a fresh network: plain cross-entropy would be near that network's test NLL
    # (about ln 10); the focal loss weighs each example's by (1 - p)^5, about 0.6 at p = 0.1.
    loss = float((out / "history.csv").read_text().splitlines()[1].split(",")[3])
    nll = json.loads((out / "summary.json").read_text())["metrics"]["test/nll"]
    assert nll > 0.8 * math.log(10) and loss < 0.8 * nll
    recorded = json.loads((out / "command.json").read_text())
    assert f"--module={MODULE}" in recorded["command"]
    assert recorded["gin_bindings"][0] == f"import {MODULE}"
    # what `--resume --output_dir` parses again (harness/store/record.py): the import first
    assert (out / "config.gin").read_text().startswith(f"import {MODULE}\n")


def test_a_module_that_cannot_be_imported_is_one_error_naming_module():
    parser = cli.Flags("python -m harness.something", "doc")
    parser.modules()
    with pytest.raises(UserError, match=r"^--module no_such_package\.focal cannot be imported: "
                                        r"ModuleNotFoundError: No module named 'no_such_package'"):
        parser.parse(["--module=no_such_package.focal"])


def test_a_configurable_never_imported_names_module_and_methods_init(tmp_path):
    gin_file = tmp_path / "mine.gin"
    gin_file.write_text("NeverImportedMethod.gamma = 2.0\n")
    with pytest.raises(UserError) as error:
        parse([str(gin_file)])
    assert "No configurable matching 'NeverImportedMethod'" in str(error.value)
    assert "--module=PACKAGE.MODULE" in str(error.value)
    assert "methods/__init__.py" in str(error.value)


def test_import_bindings_come_before_the_files_that_bind_their_configurables(tmp_path,
                                                                             monkeypatch):
    """`--module` is passed on as the binding `import ...`, after the gin files, yet a file
    may bind the module's configurables."""
    (tmp_path / "own_configurables.py").write_text(
        "import gin\n\n@gin.configurable\ndef own_setting(value: int = 1) -> int:\n"
        "    return value\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    gin_file = tmp_path / "own.gin"
    gin_file.write_text("own_setting.value = 3\n")
    parse([str(gin_file)], ["import own_configurables"])
    import gin

    assert gin.query_parameter("own_setting.value") == 3
    assert gin.config_str().startswith("import own_configurables\n")

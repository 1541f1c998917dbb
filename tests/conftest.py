import multiprocessing.process
import subprocess

import gin
import pytest

from harness.core import provenance
from harness.engine.train import Trainer
from tests.fakes import git


def pytest_addoption(parser):
    parser.addoption("--fast", action="store_true",
                     help="the suite a maintainer runs every minute (make test-fast): every "
                          "test that trains a network or starts a process is skipped at that "
                          "point")


def _skip(what: str):
    def skip(*args, **kwargs):
        pytest.skip(f"{what}: not in make test-fast")
    return skip


@pytest.fixture(scope="session", autouse=True)
def fast_suite(request):
    """Under --fast, training and starting a process skip the test that does it. Session
    scope, so that the module-scoped fixtures that train a run are skipped too."""
    if not request.config.getoption("--fast"):
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Trainer, "fit", _skip("trains a network"))
        patch.setattr(subprocess, "Popen", _skip("starts a process"))
        patch.setattr(multiprocessing.process.BaseProcess, "start", _skip("starts a process"))
        # Tables and the page ask git about their runs' code: here, as on a machine without
        # git (harness/core/provenance.py), rather than skipping every test that builds one.
        patch.setattr(provenance, "git", lambda *args, **kwargs: None)
        yield


@pytest.fixture(autouse=True)
def clean_gin():
    """Each test starts from an empty gin configuration."""
    gin.clear_config()
    yield
    gin.clear_config()


@pytest.fixture
def checkout(tmp_path):
    """A repository of two commits, the second changing harness/; returns (root, first)."""
    root = tmp_path / "checkout"
    (root / "harness").mkdir(parents=True)
    git(root, "init", "-q")
    for setting in ("user.email=test@example.com", "user.name=test"):
        git(root, "config", *setting.split("="))
    (root / "harness" / "a.py").write_text("A = 1\n")
    (root / "README.md").write_text("readme\n")
    git(root, "add", ".")
    git(root, "commit", "-qm", "first")
    first = git(root, "rev-parse", "--short", "HEAD")
    (root / "harness" / "a.py").write_text("A = 2\n")
    git(root, "commit", "-qam", "second")
    return root, first

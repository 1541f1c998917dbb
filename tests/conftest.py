import multiprocessing.process
import subprocess

import gin
import pytest

from harness.engine.train import Trainer


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
        yield


@pytest.fixture(autouse=True)
def clean_gin():
    """Each test starts from an empty gin configuration."""
    gin.clear_config()
    yield
    gin.clear_config()

"""The wheel carries the kernels: a wheel built from this tree, installed into a fresh venv
outside the checkout and run from elsewhere, compiles harness/kernels/sparse_conv.cpp (package
data) into the user's cache, not beside the installed sources, and trains EDST through it.

No network: the wheel builds without isolation, and the venv borrows the running one's
packages through a .pth file naming its site-packages. A plain path in a .pth is not processed
as a site directory, so this checkout's editable install (a .pth and a finder there) stays
inactive, and `harness` can only come from the wheel."""
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

from harness.kernels import sparse_conv

ROOT = Path(__file__).resolve().parents[2]
BUILD_INPUTS = ("harness", "methods", "pyproject.toml", "README.md")  # what setuptools reads

needs_kernels = pytest.mark.skipif(not sparse_conv.available(),
                                   reason="sparse kernels not built (no C++ compiler)")


def run(command: list, **options) -> subprocess.CompletedProcess:
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True,
                            timeout=600, **options)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def install_wheel(tmp_path: Path) -> tuple[Path, Path]:
    """A fresh venv with the wheel of this tree installed: its python and site-packages. The
    wheel is built from a copy, so that setuptools' build/ and egg-info stay out of the
    checkout."""
    source = tmp_path / "source"
    source.mkdir()
    for name in BUILD_INPUTS:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    run([sys.executable, "-m", "pip", "wheel", source, "--no-deps", "--no-build-isolation",
         "--no-cache-dir", "-q", "-w", tmp_path / "dist"])
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    site_packages = Path(run([python, "-c", "import sysconfig; "
                                            "print(sysconfig.get_paths()['purelib'])"]
                             ).stdout.strip())
    (site_packages / "freetickets-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel, = (tmp_path / "dist").glob("freetickets_bench-*.whl")
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps",
         "--no-cache-dir", "-q", wheel])
    return python, site_packages


@needs_kernels
def test_an_installed_wheel_compiles_the_kernels_into_the_cache_and_trains_with_them(tmp_path):
    """The kernels are built only when a masked layer attaches them (SparsitySpec.kernels =
    'sparse'): a library in the cache, and no 'unavailable' line, means training ran through
    them; the tickets come out exactly sparse."""
    python, site_packages = install_wheel(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cache = tmp_path / "cache"
    env = {**{key: value for key, value in os.environ.items() if key != "PYTHONPATH"},
           "FREETICKETS_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    found = run([python, "-c", "from importlib.util import find_spec; "
                               "print(find_spec('harness').origin, find_spec('methods').origin)"],
                cwd=elsewhere, env=env).stdout
    assert all(Path(path).is_relative_to(site_packages) for path in found.split()), found

    # The shortest EDST: one epoch per phase, of two steps (180 training digits).
    bindings = ["SparsitySpec.kernels = 'sparse'", "epoch_factor.factor = 0.005",
                "digits.test_fraction = 0.9", "SparsitySpec.update_interval = 2",
                "Experiment.suites = ('test',)", "inference_timing.enabled = False"]
    result = run([python, "-m", "harness.run", f"--gin_file={ROOT / 'gin' / 'edst.gin'}",
                  f"--gin_file={ROOT / 'gin' / 'scale' / 'smoke.gin'}",
                  *[f"--gin_bindings={binding}" for binding in bindings],
                  f"--output_dir={tmp_path / 'run'}"], cwd=elsewhere, env=env)
    assert "sparse kernels unavailable" not in result.stderr
    assert len(list((cache / "kernels").glob("sparse_conv-*.so"))) == 1
    assert (site_packages / "harness" / "kernels" / "sparse_conv.cpp").is_file()
    assert not list((site_packages / "harness").rglob("*.so"))
    for index in range(3):
        saved = torch.load(tmp_path / "run" / "checkpoints" / f"member_{index}.pt",
                           weights_only=False)
        masks = saved["masks"]
        assert sum(int(mask.sum()) for mask in masks.values()) / sum(
            mask.numel() for mask in masks.values()) == pytest.approx(0.2, abs=0.01)
        assert all(bool(((saved["model"][f"{name}.weight"] != 0) <= mask).all())
                   for name, mask in masks.items())

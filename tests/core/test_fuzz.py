"""Whatever a user writes, a command answers with a finished run or one line `error: ...` and
exit status 2, never a traceback: hypothesis throws values of the wrong type and range at every
annotated gin binding (through `python -m harness.run --dry_run`, and a few through a real tiny
training run) and at every flag of every entry point (`main(argv)` in a folder of its own).

Examples per configurable and per entry point: 3 by default (`make test`, CI), deterministic and
with no example database, so nothing is written into the checkout. More with FUZZ_EXAMPLES:

    FUZZ_EXAMPLES=200 .venv/bin/python -m pytest tests/core/test_fuzz.py
"""
import importlib
import inspect
import multiprocessing.process
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import gin.config
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from harness import run
from harness.core import cli
from harness.core.typecheck import annotations
from harness.data import DATASETS
from harness.engine.train import Trainer
from harness.evaluation.evaluate import SUITES
from harness.models import MODELS
from methods import METHODS

ROOT = Path(__file__).resolve().parents[2]
# Hypothesis caches (constants, unicode tables) go to the system's temporary folder, not into
# the checkout as .hypothesis/.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "freetickets-hypothesis")
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "3"))
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                print_blob=False,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])


def answered(status: int, err: str) -> None:
    """A finished command (0, or harness.diff's and migrate_runs' 1 for what they found) or
    one line `error: ...` and 2."""
    assert "Traceback" not in err, err
    if status == 2:
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err
    else:
        assert status in (0, 1), (status, err)


class Sandbox:
    """A fresh working folder per example (hypothesis runs many in one test function)."""

    def __init__(self, tmp_path: Path, monkeypatch):
        self.root, self.monkeypatch, self.count = tmp_path, monkeypatch, 0

    def folder(self) -> Path:
        self.count += 1
        folder = self.root / f"example{self.count}"
        folder.mkdir()
        self.monkeypatch.chdir(folder)
        return folder


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    return Sandbox(tmp_path, monkeypatch)


# -- gin bindings ----------------------------------------------------------------------------

def configurables() -> list:
    """Every configurable the harness and the methods register (harness/experiment/config.py
    imports them all), with its annotated parameters."""
    import harness.experiment.execute  # noqa: F401  everything a run may configure

    found = []
    for _, configurable in sorted(gin.config._REGISTRY.items()):  # noqa: SLF001
        if not configurable.wrapped.__module__.startswith(("harness", "methods")):
            continue
        hints = annotations(configurable.wrapped)
        target = (configurable.wrapped.__init__ if inspect.isclass(configurable.wrapped)
                  else configurable.wrapped)
        params = [name for name in inspect.signature(target).parameters
                  if name in hints and name not in (configurable.denylist or ())]
        if params:
            found.append((configurable.name, params))
    return found


CONFIGURABLES = configurables()
# Data sets and suites that download (or read a large data set from disk) are bound but not
# used: the binding's type check still runs, and a fuzz must not reach the network.
UNUSED = {"cifar10", "cifar100", "imagenet", "ImageNetLoader", "cifar10_c", "cifar100_c",
          "imagenet_val", "imagenet_c", "imagenet_a", "ood",
          # called at evaluation, after training: test_a_real_run_answers
          "inference_timing"}
DOWNLOADING = {"cifar10", "cifar100", "imagenet", "cifar10_c", "cifar100_c", "imagenet_val",
               "imagenet_c", "imagenet_a", "ood"}
# bindings that make the configurable take part in a smoke run
USED_WITH = {
    "resnet18": ["Experiment.model = 'resnet18'"],
    "resnet50": ["Experiment.model = 'resnet50'"],
    "npz": ["Experiment.dataset = 'npz'"],
    "fgsm": ["Experiment.suites = ('test', 'fgsm')"],
    "generated_c": ["Experiment.suites = ('test', 'generated_c')",
                    "generated_c.corruptions = ('gaussian_noise',)"],
    "Constant": ["Trainer.lr_schedule = @Constant()"],
    "Cosine": ["Trainer.lr_schedule = @Cosine()"],
    "Experiment": ["Experiment.validation_fraction = 0.1"],
    "checkpoint_selection": ["Experiment.validation_fraction = 0.1"],
}


def method_file(name: str) -> Path:
    """The method gin file that binds `name` (SparsitySpec: EDST's), else the dense one."""
    files = sorted((ROOT / "gin").glob("*.gin"))
    return next((file for file in files if file.name != "sparse.gin"
                 and f"{name}." in file.read_text()), ROOT / "gin" / "dense.gin")


def known_names() -> list[str]:
    """Names that would be accepted somewhere (methods, data sets, suites, models), less
    those that download."""
    names = [*METHODS._entries, *DATASETS._entries, *SUITES._entries, *MODELS._entries]  # noqa: SLF001
    return [name for name in names if name not in DOWNLOADING] + [
        "auto", "cpu", "cuda", "float64", "float16", "best", "last", "cosine", "constant",
        "uniform", "erk", "magnitude", "gradient", "random", "zeros", "gaussian_noise"]


def gin_literal(value) -> str:
    """`value` as gin writes it; gin has no literal for NaN."""
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "1e999" if value > 0 else "-1e999"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(gin_literal(item) for item in value)
        return f"({inner},)" if isinstance(value, tuple) and len(value) == 1 else (
            f"({inner})" if isinstance(value, tuple) else f"[{inner}]")
    return repr(value)


# Integers stay small or extreme: a middling width or member count is a real, if large,
# network that a dry run would build.
INTEGERS = st.one_of(st.integers(-3, 8), st.sampled_from([-2 ** 63, 2 ** 31, 2 ** 63, 10 ** 30]))
FLOATS = st.one_of(st.floats(-2, 2, allow_nan=False),
                   st.sampled_from([float("inf"), float("-inf"), 1e300, -1e300, 1e-300, 0.0]))
STRINGS = st.one_of(st.text(max_size=12), st.sampled_from(known_names()))
SCALARS = st.one_of(INTEGERS, FLOATS, STRINGS, st.booleans(), st.none())
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.lists(inner, max_size=3).map(tuple),
                                                       st.dictionaries(st.text(max_size=3),
                                                                       inner, max_size=2)),
                      max_leaves=6).map(gin_literal)
# references and macros: gin resolves them, the check sees what they give
REFERENCES = st.sampled_from(["@nothing_of_that_name", "%UNDEFINED", "@Trainer()", "@Augment",
                              "@Cosine()", "@epoch_factor()", "'", "(", "1 2", ""])
BINDING_VALUES = st.one_of(VALUES, REFERENCES)


def dry_run(sandbox: Sandbox, capsys, name: str, bindings: list[str], *, real: bool = False
            ) -> tuple[int, str]:
    folder = sandbox.folder()
    out = folder / "run"
    capsys.readouterr()
    status = run.main([f"--gin_file={method_file(name)}",
                       f"--gin_file={ROOT / 'gin' / 'scale' / 'smoke.gin'}",
                       "--gin_bindings=Experiment.suites = ('test',)",
                       *(f"--gin_bindings={binding}" for binding in bindings),
                       f"--output_dir={out}", "--noprogress",
                       *([] if real else ["--dry_run"])])
    err = capsys.readouterr().err
    answered(status, err)
    if status == 2:
        assert not out.exists(), list(out.iterdir())
    return status, err


@pytest.mark.parametrize("name, params", CONFIGURABLES, ids=[name for name, _ in CONFIGURABLES])
@FUZZ
@given(data=st.data())
def test_every_binding_answers_a_dry_run(name, params, data, sandbox, capsys):
    param = data.draw(st.sampled_from(params), label="parameter")
    value = data.draw(BINDING_VALUES, label="value")
    context = [] if name in UNUSED else USED_WITH.get(name, [])
    dry_run(sandbox, capsys, name, [*context, f"{name}.{param} = {value}"])


# Found by the fuzz: each was a traceback.
@pytest.mark.parametrize("binding, error", [
    ("Experiment.device = @Trainer()",
     "error: Experiment.device must be a string, got @Trainer()"),
    ("Experiment.seed = @epoch_factor()",
     "error: Experiment.seed must be an integer, got @epoch_factor()"),
    ("Experiment.model = @epoch_factor",
     "error: Experiment.model must be a string, got @epoch_factor"),
    ("Experiment.suites = %NAME\nNAME = 'test'",
     "error: Experiment.suites must be a tuple, got %NAME = 'test'"),
    # tracebacks in a real run only (building the network, timing it after training)
    ("wide_resnet.width = 0", "error: wide_resnet.width must be >= 1, got 0"),
    ("inference_timing.batch_size = 0",
     "error: inference_timing.batch_size must be >= 1, got 0"),
    ("DenseEnsemble.num_members = 2147483648",  # a MemoryError planning 2^31 members
     "error: DenseEnsemble.num_members must be <= 1024, got 2147483648"),
    ("Trainer.momentum = 0\nTrainer.nesterov = True",
     "error: Trainer.nesterov = True needs Trainer.momentum > 0, got 0"),
])
def test_found_bindings_are_one_line(binding, error, sandbox, capsys):
    status, err = dry_run(sandbox, capsys, binding.split(".")[0], binding.split("\n"))
    assert status == 2 and (error is None or err.strip() == error), err


@FUZZ
@given(binding=st.text(max_size=40))
@example(binding="Trainer.no_such_setting = 1")
@example(binding="no_such_configurable.x = 1")
@example(binding="Trainer.lr = ")
def test_any_binding_text_answers(binding, sandbox, capsys):
    dry_run(sandbox, capsys, "Experiment", [binding])


# A real training run: one epoch of 64 digits. Settings it reads during training and
# evaluation; values that are valid stay small, so each run takes about a second.
TRAINING = {
    "Trainer.lr": FLOATS.map(gin_literal),
    "Trainer.momentum": FLOATS.map(gin_literal),
    "Trainer.label_smoothing": FLOATS.map(gin_literal),
    "Trainer.checkpoint_every": INTEGERS.filter(lambda value: value < 100).map(gin_literal),
    "Augment.padding": st.integers(-3, 3).map(gin_literal),
    "inference_timing.batch_size": st.integers(-3, 8).map(gin_literal),
    "inference_timing.rounds": st.integers(-3, 3).map(gin_literal),
    "inference_timing.image_shape": VALUES,
    "checkpoint_selection.rule": STRINGS.map(gin_literal),
}


@settings(FUZZ, max_examples=max(2, EXAMPLES // 3))
@given(data=st.data())
@example(data=None)
def test_a_real_run_answers(data, sandbox, capsys):
    if data is None:  # the plain run: it finishes
        bindings = []
    else:
        setting = data.draw(st.sampled_from(sorted(TRAINING)), label="setting")
        bindings = [f"{setting} = {data.draw(TRAINING[setting], label='value')}"]
    status, err = dry_run(sandbox, capsys, "Experiment", [
        "Experiment.train_subset = 64", "epoch_factor.factor = 0.004", *bindings], real=True)
    if data is None:
        assert status == 0, err


# -- flags of every entry point --------------------------------------------------------------

def entry_points() -> dict[str, str]:
    """Every `python -m harness.<name>`, by the same rule as tests/core/test_cli.py: its name
    and the module of its `main`."""
    found = {}
    for path in sorted((ROOT / "harness").rglob("*.py")):
        if 'if __name__ == "__main__"' in path.read_text():
            module = str(path.relative_to(ROOT).with_suffix("")).replace("/", ".")
            found[module.removesuffix(".__main__")] = module
    return found


ENTRY_POINTS = entry_points()


def declared_flags(main, monkeypatch, capsys) -> cli.Flags:
    """The `cli.Flags` that `main` parses, caught as it prints its --help."""
    seen = []
    parse = cli.Flags.parse
    monkeypatch.setattr(cli.Flags, "parse",
                        lambda self, argv: (seen.append(self), parse(self, argv))[1])
    assert main(["--help"]) == 0
    monkeypatch.setattr(cli.Flags, "parse", parse)
    capsys.readouterr()
    return seen[0]


class WorkStarted(BaseException):
    """The command accepted its flags and began the work they ask for (training, a process, a
    download, a benchmark): a fuzz cannot wait for it to finish."""


def start_work(what: str):
    def started(*args, **kwargs):
        raise WorkStarted(what)
    return started


@pytest.fixture
def bounded(monkeypatch):
    """Where the work of a command begins, it stops (WorkStarted)."""
    monkeypatch.setattr(Trainer, "fit", start_work("training"))
    monkeypatch.setattr(subprocess, "Popen", start_work("a process"))
    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", start_work("a process"))
    monkeypatch.setattr(socket.socket, "connect", start_work("a download"))
    from harness.bench import gpu_check, suite

    monkeypatch.setattr(suite, "run_all", start_work("the benchmarks"))
    monkeypatch.setattr(suite, "stream_and_report_peak", start_work("a benchmark"))
    monkeypatch.setattr(gpu_check, "gpu_check", start_work("the GPU check"))
    monkeypatch.setattr(gpu_check, "ddp_probe", start_work("a DDP rank"))


def paths(folder: Path) -> st.SearchStrategy[str]:
    """Paths of what is not there, a file where a folder is wanted and the reverse, a folder
    of junk where a run or a table is wanted, names too long, empty; gin files and the gin
    folder (a copy in `folder`)."""
    return st.sampled_from([str(folder / "missing"), str(folder / "a_file.txt"),
                            str(folder / "a_folder"), str(folder / "junk"), "", ".",
                            "x" * 300, str(folder / "gin" / "dense.gin"),
                            str(folder / "gin" / "scale" / "smoke.gin"), str(folder / "gin")])


def lay_out(folder: Path) -> None:
    # a copy: a command may write where a path flag points (harness.demo's --output_dir)
    shutil.copytree(ROOT / "gin", folder / "gin")
    (folder / "a_file.txt").write_text("not what was asked for\n")
    (folder / "a_folder").mkdir()
    junk = folder / "junk"
    (junk / "seed0").mkdir(parents=True)
    for name in ("summary.json", "metrics.parquet", "command.json", "config.gin",
                 "table1.parquet", "seed0/summary.json"):
        (junk / name).write_text("{ not json")


TEXT = st.text(st.characters(exclude_categories=["Cs", "Cc"]), max_size=12)
INTEGER_TEXT = st.one_of(TEXT, st.sampled_from(["-1", "0", "1", "2", "-5", "1.5", "", "0x10",
                                                 " 3", "99999999999999999999", "nan", "1e3"]))
INTEGER_LIST_TEXT = st.one_of(TEXT, st.sampled_from(["1,,2", "a,b", "-1", "0", "", ",", "1,2",
                                                      "1", "1.5", "3,0"]))
STRING_TEXT = st.one_of(TEXT, st.sampled_from(["", ",", "a,,b", "smoke", "tiny", "cpu",
                                               "cuda", "auto", "local", "dense_ensemble",
                                               "sparse_inference", "=", "x=y"]))
# scales that would train a network on CIFAR (a download): --scale takes the others only
TRAINS_ON_CIFAR = {"paper", "cpu"}


def flag_value(flags: cli.Flags, name: str, folder: Path) -> st.SearchStrategy[str]:
    flag = flags.values[name]
    if flag.boolean:
        return st.sampled_from(["maybe", "", "2", "yes please"]).map(lambda text: f"={text}")
    if name in flags.paths or name == "gin_file":
        text = paths(folder)
    elif name in flags.integer_lists:
        text = INTEGER_LIST_TEXT
    elif flag.flag_type() == "int":
        text = INTEGER_TEXT
    elif name == "gin_bindings":
        text = st.one_of(TEXT, st.sampled_from(["Trainer.lr = 'x'", "Trainer.lr =",
                                                "Experiment.seed = -1", "nothing.x = 1"]))
    elif flag.flag_type() == "enum" or hasattr(flag.parser, "enum_values"):
        text = st.one_of(TEXT, st.sampled_from(flag.parser.enum_values))
    else:
        text = STRING_TEXT
    if name == "scale":
        text = text.filter(lambda value: value not in TRAINS_ON_CIFAR)
    return text.map(lambda value: f"={value}")


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_every_flag_answers(name, sandbox, bounded, monkeypatch, capsys):
    main = importlib.import_module(ENTRY_POINTS[name]).main
    flags = declared_flags(main, monkeypatch, capsys)
    names = sorted(flag for flag in flags.values if flag != "help")

    @FUZZ
    @given(data=st.data())
    def fuzz(data):
        folder = sandbox.folder()
        lay_out(folder)
        argv = [data.draw(paths(folder), label=positional) for positional in flags.positionals]
        if flags.variadic:
            argv += data.draw(st.lists(paths(folder), min_size=0, max_size=2), label="args")
        chosen = data.draw(st.lists(st.sampled_from(names), max_size=3, unique=True)
                           if names else st.just([]), label="flags")
        for flag in sorted(set(chosen) | flags.required):
            argv.append(f"--{flag}{data.draw(flag_value(flags, flag, folder), label=flag)}")
        if "scale" in names and "scale" not in chosen:
            argv.append("--scale=smoke")
        argv += data.draw(st.sampled_from([[], ["--no_such_flag=1"], ["extra"], ["--"]]),
                          label="extra")
        capsys.readouterr()
        try:
            status = main(argv)
        except WorkStarted:
            return
        answered(status, capsys.readouterr().err)
        shutil.rmtree(folder, ignore_errors=True)

    fuzz()


LONG = "x" * 300


# Found by the fuzz. `folder` holds a_file.txt and the folder junk (`lay_out`).
@pytest.mark.parametrize("name, argv, error", [
    ("harness.data.tiny_imagenet", [f"--output_dir={LONG}"],
     "error: --output_dir: the name xxxxxxxxxxxxxxxx... is too long (300 characters; a file "
     "system takes at most 255)"),
    ("harness.diff", [LONG, "missing"],
     "error: OLD: the name xxxxxxxxxxxxxxxx... is too long (300 characters; a file system "
     "takes at most 255)"),
    ("harness.export", [LONG, "--output_dir=out"],
     "error: RUN_DIR: the name xxxxxxxxxxxxxxxx... is too long (300 characters; a file system "
     "takes at most 255)"),
    ("harness.demo", [f"--gin_dir={LONG}"],
     "error: --gin_dir: the name xxxxxxxxxxxxxxxx... is too long (300 characters; a file "
     "system takes at most 255)"),
    ("harness.demo", ["--output_dir=a_file.txt"],
     "error: --output_dir a_file.txt is a file, not a folder; choose another --output_dir"),
    ("harness.gpu_check", ["--output_dir=a_file.txt/gpu"],
     "error: --output_dir a_file.txt/gpu is inside a_file.txt, which is a file, not a folder; "
     "choose another --output_dir"),
    ("harness.bench", ["--stream_peak=0"],
     "error: --stream_peak takes FOLDER,COUNT (COUNT an integer >= 1), got '0'"),
    ("harness.report", ["--catalogue=a_file.txt", "--scale=smoke"],
     "error: --catalogue a_file.txt is not a Python file (*.py) that defines CATALOGUE"),
    ("harness.compare", ["junk"], None),
])
def test_found_flags_are_one_line(name, argv, error, sandbox, bounded, capsys):
    lay_out(sandbox.folder())
    capsys.readouterr()
    status = importlib.import_module(ENTRY_POINTS[name]).main(argv)
    err = capsys.readouterr().err
    answered(status, err)
    assert status == 2
    if error is not None:
        assert err.strip() == error

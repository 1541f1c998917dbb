"""A run's configuration as text (as `gin.config_str()` writes it): its bindings, how two
configurations differ, and the identity the run store files a run by (harness/store/runs.py).

The identity is the *operative* configuration, known before training: the default of every
parameter of every configurable the project registers with gin (harness/ and methods/),
overridden by the configuration's bindings, hashed with the store's format. The scope is every
project configurable rather than those a method happens to call: which ones a run calls is only
known once it has run, and a run is looked up before it starts; so a changed default anywhere
re-identifies every run (one retraining too many at worst, never a stale run reused). Left out:
the seed (a run's seed is its folder), the settings that only observe (`OBSERVING`), and the
`import` lines of a module of one's own (`--module`, harness/experiment/config.py): what a run
computes is named by the bindings of that module's configurables and the method name it
registers, which the identity holds, while the import only makes them known; so a table given
`--module` for one row of one's own still finds every other row's runs. A plugin's defaults are
outside the project's (PROJECT_MODULES), so a run of it is identified by what its gin file binds:
bind there what matters, and train again (`--overwrite`) after changing the plugin's code."""
import ast
import hashlib
import inspect
import pprint
import re

import gin

from harness.core.errors import UserError

SEED_BINDING = "Experiment.seed"
ID_LENGTH = 12
BINDING = re.compile(r"^(\S+)\s*=\s*(.*)$")
PROJECT_MODULES = ("harness.", "methods.")
# 1: ids hashed the explicit bindings alone; 2: the operative configuration (this module).
STORE_FORMAT = 2

# Settings that change what a run records, not what it computes: the same training, so the
# same run whatever their value. A table or figure that needs what one of them records checks
# that the run has it (e.g. harness/paper/trajectory_tsne.py).
OBSERVING = {
    "trajectory_checkpoints.every_epochs":
        "saves copies of each member along training (Figure 3); training never reads them",
    "SparsitySpec.kernels":
        "dense, sparse or auto arithmetic of the masked convs: the same numbers, another speed "
        "(methods/sparse/kernels.py)",
    "Experiment.tensorboard": "writes the history it records anyway as TensorBoard scalars",
    "Trainer.progress": "progress bars or log lines",
    "inference_timing.enabled": "whether the prediction speed is measured after training",
    "inference_timing.batch_size": "the batch the prediction speed is measured with",
    "inference_timing.rounds": "how many times the prediction speed is measured",
}


def bindings(config: str) -> dict[str, str]:
    """A configuration as `gin.config_str()` writes it -> {binding: value as text}; a value
    may continue on indented lines, and how its whitespace is laid out does not count."""
    values: dict[str, str] = {}
    name = None
    for line in config.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = BINDING.match(line)
        if match and not line[0].isspace():
            name = match.group(1)
            values[name] = match.group(2)
        elif line.startswith(("import ", "from ")):
            values[line.strip()] = ""
        elif name is not None:
            values[name] += line
    return {name: " ".join(value.split()).removeprefix("\\ ")  # gin's line continuation
            for name, value in values.items()}


def config_differences(recorded: str, now: str) -> list[str]:
    """'<binding> (<recorded value> recorded, <value now> now)' for each binding that differs
    between two configurations."""
    return differences(bindings(recorded), bindings(now))


def differences(old: dict[str, str], new: dict[str, str]) -> list[str]:
    return [f"{name} ({old.get(name, 'unset')} recorded, {new.get(name, 'unset')} now)"
            for name in sorted(old.keys() | new.keys()) if old.get(name) != new.get(name)]


def operative_values(config: str) -> dict[str, str]:
    """{binding: value as text} of everything that decides what the run computes: every
    project configurable's defaults, overridden by `config`'s bindings, without the seed and
    the observing settings. A UserError names a binding of no registered configurable (a
    configurable renamed since the run, or its module not imported)."""
    explicit = bindings(config)
    registry = gin.config._REGISTRY  # gin has no public way to list its configurables
    for name in explicit:
        selector = name.rpartition("/")[2].rpartition(".")[0]
        if "." in name and not name.startswith(("import ", "from ")) and (
                registry.get_match(selector) is None):
            raise UserError(f"the configuration binds {name}, but no configurable "
                            f"{selector!r} is registered")
    values = {**default_values(), **{name: value for name, value in explicit.items()
                                     if not name.startswith(("import ", "from "))}}
    for name in (SEED_BINDING, *OBSERVING):
        values.pop(name, None)
    return values


def default_values() -> dict[str, str]:
    """{binding: default as `gin.config_str()` would write it} of every parameter gin may
    pass to a project configurable: not a denylisted one, not one outside an allowlist, not
    *args/**kwargs, and not a default gin cannot write (a sentinel for "required")."""
    registry = gin.config._REGISTRY
    values = {}
    for selector, configurable in registry.items():
        if not configurable.module.startswith(PROJECT_MODULES):
            continue
        name = registry.minimal_selector(selector)
        for parameter in inspect.signature(configurable.wrapped).parameters.values():
            if (parameter.default is inspect.Parameter.empty
                    or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
                    or parameter.name in (configurable.denylist or ())
                    or (configurable.allowlist and parameter.name not in configurable.allowlist)):
                continue
            text = " ".join(pprint.pformat(parameter.default).split())
            try:
                ast.literal_eval(text)
            except (ValueError, SyntaxError):
                continue
            values[f"{name}.{parameter.name}"] = text
    return values


def configuration_id(config: str) -> str:
    """The run store's name for a configuration (as `gin.config_str()` writes it): the hash
    of its operative values (`operative_values`) and the store format. Every place that files
    or finds a run asks this function."""
    values = operative_values(config)
    text = "\n".join([f"store format {STORE_FORMAT}",
                      *(f"{name} = {value}" for name, value in sorted(values.items()))])
    return hashlib.sha256(text.encode()).hexdigest()[:ID_LENGTH]


def trained_configuration(config: str, operative: str) -> str:
    """The configuration a finished run was trained under: its `config.gin` overridden by its
    `operative_config.gin` (the values it was trained with, defaults of the day included). The
    operative configuration alone would not do: it leaves out what the run never called (the
    smoke scale's `TreeNet.split` in a dense run), which the id counts as `config.gin` binds
    it. Its `identity_differences` with `config` are the defaults changed since."""
    return config + "\n" + operative


def identity_differences(recorded: str, now: str) -> list[str]:
    """`config_differences` of what identifies a run: a binding equal to its default, the seed
    and an observing setting make no difference."""
    return differences(operative_values(recorded), operative_values(now))


def seed_binding(seed: int) -> str:
    """The binding that gives a run its seed; the configuration id leaves it out, so a run's
    seed is its folder's name (harness/store/runs.py `RunStore.run_dir`)."""
    return f"{SEED_BINDING} = {seed}"


def seed_of(config: str) -> int:
    return int(bindings(config).get(SEED_BINDING, "0"))


def method_of(config: str) -> str:
    return bindings(config).get("Experiment.method", "'run'").strip("'\"")

"""A run's configuration as text (as `gin.config_str()` writes it): its bindings, how two
configurations differ, and the identity the run store files a run by (harness/store/runs.py)."""
import hashlib
import re

SEED_BINDING = "Experiment.seed"
ID_LENGTH = 12
BINDING = re.compile(r"^(\S+)\s*=\s*(.*)$")


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
    return {name: " ".join(value.split()) for name, value in values.items()}


def config_differences(recorded: str, now: str) -> list[str]:
    """'<binding> (<recorded value> recorded, <value now> now)' for each binding that differs
    between two configurations."""
    old, new = bindings(recorded), bindings(now)
    return [f"{name} ({old.get(name, 'unset')} recorded, {new.get(name, 'unset')} now)"
            for name in sorted(old.keys() | new.keys()) if old.get(name) != new.get(name)]


def configuration_id(config: str) -> str:
    """The hash of a configuration (as `gin.config_str()` writes it) without its seed; how its
    lines are laid out does not count (harness/experiment/config.py `bindings`)."""
    values = bindings(config)
    values.pop(SEED_BINDING, None)
    text = "\n".join(f"{name} = {value}" for name, value in sorted(values.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:ID_LENGTH]


def seed_binding(seed: int) -> str:
    """The binding that gives a run its seed; the configuration id leaves it out, so a run's
    seed is its folder's name (harness/store/runs.py `RunStore.run_dir`)."""
    return f"{SEED_BINDING} = {seed}"


def seed_of(config: str) -> int:
    return int(bindings(config).get(SEED_BINDING, "0"))


def method_of(config: str) -> str:
    return bindings(config).get("Experiment.method", "'run'").strip("'\"")

"""The architecture: the wings of harness/ (and methods/) in one order, bottom up, and imports
only go down it; no import cycle either. Imports inside functions count too (a deferred import
hides a climb or a cycle, it does not remove it)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Bottom up: a module may import its own wing and the wings below it. The entry points (the
# modules at the top of harness/ and every __main__.py) stand above all wings.
WINGS = ("core", "store", "data", "kernels", "engine", "flops", "models", "evaluation",
         "methods", "experiment", "tables", "paper", "bench")
ENTRY_POINTS = "entry points"


def module_paths(root: Path = ROOT) -> dict[str, Path]:
    modules = {}
    for path in [*root.glob("harness/**/*.py"), *root.glob("methods/**/*.py")]:
        name = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    return modules


def wing_of(name: str, path: Path) -> str:
    parts = name.split(".")
    if parts[0] == "methods":
        return "methods"
    if path.name == "__main__.py" or len(parts) == 1 or (
            len(parts) == 2 and path.name != "__init__.py"):
        return ENTRY_POINTS
    return parts[1]


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    modules = module_paths(root)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            for target in targets:
                while target and target not in modules:  # a name inside a module
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def climbs(graph: dict[str, set[str]], wings: dict[str, str]) -> list[str]:
    rank = {wing: index for index, wing in enumerate((*WINGS, ENTRY_POINTS))}
    return sorted(f"{name} ({wings[name]}) imports {target} ({wings[target]})"
                  for name, targets in graph.items() for target in targets
                  if rank[wings[target]] > rank[wings[name]])


def test_every_module_sits_in_a_declared_wing():
    wings = {wing_of(name, path) for name, path in module_paths().items()}
    assert wings <= {*WINGS, ENTRY_POINTS}, wings - {*WINGS, ENTRY_POINTS}
    assert set(WINGS) <= wings


def test_no_import_climbs_against_the_wings():
    wings = {name: wing_of(name, path) for name, path in module_paths().items()}
    found = climbs(import_graph(), wings)
    assert not found, "imports against the order of the wings:\n" + "\n".join(found)


def test_the_climb_finder_finds_a_deferred_climb(tmp_path):
    """A function-level import of a higher wing is a climb: the graph sees inside functions;
    an entry point may import any wing."""
    for module, text in {"harness/core/errors.py": "def f():\n    from harness.tables import render\n",
                         "harness/tables/render.py": "from harness.core.errors import f\n",
                         "harness/run.py": "import harness.tables.render\n"}.items():
        (tmp_path / module).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / module).write_text(text)
    modules = module_paths(tmp_path)
    wings = {name: wing_of(name, path) for name, path in modules.items()}
    assert climbs(import_graph(tmp_path), wings) == [
        "harness.core.errors (core) imports harness.tables.render (tables)"]


def test_no_import_cycle():
    found = [sorted(cycle) for cycle in cycles(import_graph())]
    assert not found, f"import cycles: {found}"


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset("abc")]


def test_importing_the_experiment_registers_every_configurable():
    """The tables and the launcher parse a row's gin before anything runs, having imported
    harness.experiment.assemble alone: every module that declares a gin configurable loads with it."""
    import subprocess
    import sys

    declaring = sorted(".".join(path.relative_to(ROOT).with_suffix("").parts)
                       .removesuffix(".__init__")
                       for path in [*ROOT.glob("harness/**/*.py"), *ROOT.glob("methods/**/*.py")]
                       if "gin.configurable" in path.read_text())
    script = ("import sys, harness.experiment.assemble; print(' '.join(m for m in sys.argv[1:] "
              "if m not in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script, *declaring], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == []

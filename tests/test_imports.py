"""The harness's modules import in one direction: no import cycle among harness/ and methods/,
counting imports inside functions too (a deferred import hides a cycle, it does not remove
it)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def import_graph() -> dict[str, set[str]]:
    modules = {}
    for path in [*ROOT.glob("harness/**/*.py"), *ROOT.glob("methods/**/*.py")]:
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
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


def test_no_import_cycle():
    found = [sorted(cycle) for cycle in cycles(import_graph())]
    assert not found, f"import cycles: {found}"


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset("abc")]


def test_importing_the_experiment_registers_every_configurable():
    """The tables and the launcher parse a row's gin before anything runs, having imported
    harness.experiment alone: every module that declares a gin configurable loads with it."""
    import subprocess
    import sys

    declaring = sorted(".".join(path.relative_to(ROOT).with_suffix("").parts)
                       .removesuffix(".__init__")
                       for path in [*ROOT.glob("harness/**/*.py"), *ROOT.glob("methods/**/*.py")]
                       if "gin.configurable" in path.read_text())
    script = ("import sys, harness.experiment; print(' '.join(m for m in sys.argv[1:] "
              "if m not in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script, *declaring], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == []

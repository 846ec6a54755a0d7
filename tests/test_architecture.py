"""The package's shape: the layer order of docs/architecture.md (imports inside functions count too),
no import cycles, every module in the table, modules and functions of bounded size."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "src" / "pudlab"
ARCHITECTURE_DOC = PACKAGE_ROOT.parents[1] / "docs" / "architecture.md"
MAX_MODULE_LINES = 520


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE_ROOT.rglob("*.py")}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """Edges module -> pudlab module it imports, at any depth of the file (functions included).

    ``from pkg import name`` counts as an import of ``pkg.name`` when that is a module, else of ``pkg``.
    Imports under ``if TYPE_CHECKING:`` are left out: they never run.
    """
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        type_checking_nodes: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                type_checking_nodes.update(id(child) for child in ast.walk(node))
        for node in ast.walk(tree):
            if id(node) in type_checking_nodes:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, path.name == "__init__.py", node)
                for alias in node.names:
                    candidate = f"{base}.{alias.name}"
                    targets.append(candidate if candidate in modules else base)
            for target in targets:
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that starts and ends at the same node, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_find_cycle_sees_a_planted_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_module_is_too_long() -> None:
    long_modules = {
        name: n
        for name, path in _modules().items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not long_modules, f"modules over {MAX_MODULE_LINES} lines: {long_modules}"


HELP_PROBE = """
import sys
from click.testing import CliRunner
from pudlab.cli import cli

runner = CliRunner()
def walk(group, path):
    result = runner.invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, (path, result.output)
    for name, command in getattr(group, "commands", {}).items():
        walk(command, [*path, name])
walk(cli, [])
print("torch" in sys.modules)
"""


def test_help_never_imports_torch() -> None:
    """``pudlab --help`` and every subcommand's ``--help`` stay fast: torch is imported only by
    commands that train or load weights (measured: 0.12 s per --help on 2 cores)."""
    result = subprocess.run([sys.executable, "-c", HELP_PROBE], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False", result.stdout + result.stderr


def test_public_api_resolves() -> None:
    import pudlab

    missing = [name for name in pudlab.__all__ if getattr(pudlab, name, None) is None]
    assert not missing, f"pudlab.__all__ names that do not resolve: {missing}"


MAX_FUNCTION_LINES = 60


def test_long_functions_say_why() -> None:
    """A function over 60 lines carries a ``# long: <reason>`` comment on the line above it."""
    unexplained = []
    for name, path in _modules().items():
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES and \
                        not lines[first - 2].strip().startswith("# long:"):
                    unexplained.append(f"{name}.{node.name}")
    assert not unexplained, f"functions over {MAX_FUNCTION_LINES} lines without a '# long:' reason: {unexplained}"


def layer_table(text: str) -> dict[str, float]:
    """The layer of each home named in the table of docs/architecture.md: ``{"pudlab.io": 0,
    "pudlab.data": 1, ...}``. A row reads ``| N. name | `a.py`, `pkg/` | what it holds |``; a file names a
    module, a folder a package (every module under it). In a row of several packages (folders only)
    their order is an order too: the i-th gets layer N + i / 100, so it may import those before it."""
    homes: dict[str, float] = {}
    for line in text.splitlines():
        row = re.match(r"^\|\s*(\d+)\.[^|]*\|([^|]*)\|", line)
        if not row:
            continue
        named = re.findall(r"`([^`]+)`", row.group(2))
        ordered = len(named) > 1 and all(home.endswith("/") for home in named)
        for position, home in enumerate(named):
            name = "pudlab." + home.removesuffix("/").removesuffix(".py").replace("/", ".")
            homes[name] = int(row.group(1)) + (position / 100 if ordered else 0)
    return homes


def layer_of(module: str, homes: dict[str, float]) -> float | None:
    """The layer of ``module``: its own row, else its package's (the longest home that contains it)."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        layer = homes.get(".".join(parts[:end]))
        if layer is not None:
            return layer
    return None


def upward_imports(graph: dict[str, set[str]], homes: dict[str, float]) -> list[str]:
    """Every edge from a module to one of a higher-numbered layer (a layer below it in the table)."""
    found = []
    for source, targets in graph.items():
        source_layer = layer_of(source, homes)
        for target in sorted(targets):
            target_layer = layer_of(target, homes)
            if source_layer is not None and target_layer is not None and target_layer > source_layer:
                found.append(f"{source} (layer {source_layer}) imports {target} (layer {target_layer})")
    return found


def _documented_homes() -> dict[str, float]:
    return layer_table(ARCHITECTURE_DOC.read_text(encoding="utf-8"))


def test_layer_table_reads_the_documented_rows() -> None:
    homes = layer_table("| layer | home | what |\n|---|---|---|\n| 0. base | `io.py`, `a/b.py` | x |\n"
                        "| 3. data | `data/` | `idx.py` |\n| 8. apps | `privacy/`, `pud/`, `pud/sub/` | y |\n")
    assert homes == {"pudlab.io": 0, "pudlab.a.b": 0, "pudlab.data": 3, "pudlab.privacy": 8, "pudlab.pud": 8.01,
                     "pudlab.pud.sub": 8.02}
    assert layer_of("pudlab.data.idx", homes) == 3 and layer_of("pudlab.other", homes) is None
    assert layer_of("pudlab.pud.sub.x", homes) == 8.02 and layer_of("pudlab.pud.x", homes) == 8.01


def test_upward_import_check_sees_a_planted_edge() -> None:
    homes = {"pudlab.io": 0, "pudlab.data": 1, "pudlab.report": 9}
    graph = {"pudlab.data.idx": {"pudlab.io"}, "pudlab.io": set(), "pudlab.data.cache": {"pudlab.report.figures"}}
    assert upward_imports(graph, homes) == [
        "pudlab.data.cache (layer 1) imports pudlab.report.figures (layer 9)"]
    same_row = {"pudlab.privacy": 8, "pudlab.pud": 8.01}
    assert upward_imports({"pudlab.pud.scores": {"pudlab.privacy.report"}}, same_row) == []
    assert upward_imports({"pudlab.privacy.report": {"pudlab.pud.scores"}}, same_row) == [
        "pudlab.privacy.report (layer 8) imports pudlab.pud.scores (layer 8.01)"]


def test_every_module_has_a_documented_layer() -> None:
    homes = _documented_homes()
    missing = sorted(name for name in _modules() if name != "pudlab" and layer_of(name, homes) is None)
    assert not missing, f"modules with no row in docs/architecture.md: {missing}"


def test_every_module_of_a_package_is_described() -> None:
    """A package's row names each of its modules (``trainer.py`` or ``trainer``) in its description.

    The row of a package is the one whose homes name its folder from ``pudlab/`` (``train/``, and
    ``fl/flower/`` for a subpackage)."""
    text = ARCHITECTURE_DOC.read_text(encoding="utf-8")
    undescribed = []
    for name, path in _modules().items():
        if path.name == "__init__.py" or path.parent == PACKAGE_ROOT:
            continue
        package = path.parent.relative_to(PACKAGE_ROOT).as_posix()
        row = next((line for line in text.splitlines() if re.match(rf"^\|[^|]*\|[^|]*`{package}/`", line)), "")
        if not re.search(rf"`{re.escape(path.stem)}(\.py)?`", row):
            undescribed.append(name)
    assert not undescribed, f"modules not described in their package's row of docs/architecture.md: {undescribed}"


def test_imports_follow_the_layer_order() -> None:
    """A module imports only from its own layer or the layers above it in docs/architecture.md."""
    found = upward_imports(import_graph(), _documented_homes())
    assert not found, "imports against the layer order: " + "; ".join(found)


def test_long_markers_are_not_stale() -> None:
    """A ``# long:`` comment stands only above a function that is over 60 lines."""
    stale = []
    for name, path in _modules().items():
        lines = path.read_text(encoding="utf-8").splitlines()
        starts = {}
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                starts[first - 1] = node.end_lineno - node.lineno + 1
        for number, line in enumerate(lines, start=1):
            if line.strip().startswith("# long:") and starts.get(number, 0) <= MAX_FUNCTION_LINES:
                stale.append(f"{name}:{number}")
    assert not stale, f"'# long:' markers above functions of at most {MAX_FUNCTION_LINES} lines: {stale}"

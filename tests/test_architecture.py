"""The architecture of the package, read from its import statements.

The folders are the wings (see the design notes): errors, io, activations and the optimizers
at the bottom, then calculus and engine side by side, diagnostics above them, the adapters,
the lab, the presentation and finally the command line. These tests read every ``import``
of ``src/gradsight`` with :mod:`ast` — at module level and inside functions, relative imports
resolved — and check that

* there is no import cycle;
* every import points down (or sideways where the wings allow it);
* the readable engine never reaches into ``engine.fast`` (only ``fit`` chooses the fast step);
* no private name crosses a package boundary;
* a late import (inside a function) of a gradsight module says why, and happens only in the
  wings that may import late;
* the old module names are still the same module objects as their new homes.

Each checker is a plain function of the parsed imports, and each is shown on a tiny package
written to ``tmp_path`` that it must catch.
"""

from __future__ import annotations

import ast
import importlib
import io
import json
import subprocess
import sys
import textwrap
import tokenize
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "gradsight"


# ---- reading the import graph ------------------------------------------------------------------
@dataclass(frozen=True)
class Import:
    """One imported module (or name of a module) of one import statement."""

    importer: str  # the module whose source holds the statement
    target: str  # the module imported (for ``from X import name``: X, or X.name if a module)
    line: int  # first line of the statement
    end_line: int
    name: str | None = None  # for ``from X import name`` when name is not a module
    late: bool = False  # inside a function body
    typing_only: bool = False  # under ``if TYPE_CHECKING:``
    commented: bool = False  # a comment on the statement's lines, or a comment line above it

    def __str__(self) -> str:
        what = self.target if self.name is None else f"{self.target}.{self.name}"
        return f"{self.importer}:{self.line} imports {what}"


def module_files(src: Path, package: str) -> dict[str, Path]:
    """Every module of ``package`` under ``src``: dotted name → file (a package is its
    ``__init__.py``)."""
    modules = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def is_package(modules: dict[str, Path], module: str) -> bool:
    return modules[module].name == "__init__.py"


def package_of(modules: dict[str, Path], module: str) -> str:
    """The package (folder) a module lives in; a package is its own."""
    return module if is_package(modules, module) else module.rpartition(".")[0]


def _literal_dict(path: Path, name: str) -> dict[str, str]:
    """The value of ``name = {...}`` at the top of ``path`` if it is a literal dict."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign):
            targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            targets = [node.target.id]
        else:
            continue
        if name in targets and node.value is not None:
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return {}
            return value if isinstance(value, dict) else {}
    return {}


class _Resolver:
    """Turns the dotted names of import statements into modules of the package."""

    def __init__(self, src: Path, package: str) -> None:
        self.modules = module_files(src, package)
        # the old module names (``gradsight.nn`` → ``gradsight.engine``)
        self.aliases = _literal_dict(self.modules[package], "ALIASES")
        # names a package's __init__ loads on first use: name → relative module
        self.lazy = {module: _literal_dict(path, "_LAZY") for module, path in
                     self.modules.items() if is_package(self.modules, module)}

    def real(self, name: str) -> str:
        """``name`` with an old alias prefix replaced by the module it names."""
        for old, new in self.aliases.items():
            if name == old or name.startswith(old + "."):
                return new + name[len(old):]
        return name

    def module(self, name: str) -> str | None:
        """The module of the package that ``name`` is, or None (another library)."""
        name = self.real(name)
        return name if name in self.modules else None

    def lazy_target(self, package: str, name: str) -> str | None:
        relative = self.lazy.get(package, {}).get(name)
        return None if relative is None else self.module(f"{package}.{relative}")


def _comment_lines(source: str) -> tuple[set[int], set[int]]:
    """The lines with a comment, and the lines that are only a comment."""
    lines, whole = set(), set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            lines.add(token.start[0])
            if not token.line[:token.start[1]].strip():
                whole.add(token.start[0])
    return lines, whole


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _statements(tree: ast.AST) -> Iterable[tuple[ast.Import | ast.ImportFrom, bool, bool]]:
    """Every import statement with (inside a function, under ``if TYPE_CHECKING:``)."""

    def walk(node: ast.AST, late: bool, typing: bool) -> Iterable[tuple]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, late, typing
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                yield from walk(child, True, typing)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for statement in child.body:
                    yield from walk(ast.Module(body=[statement], type_ignores=[]), late, True)
                for statement in child.orelse:
                    yield from walk(ast.Module(body=[statement], type_ignores=[]), late, typing)
            else:
                yield from walk(child, late, typing)

    yield from walk(tree, False, False)


def _targets(statement: ast.Import | ast.ImportFrom, resolver: _Resolver,
             here: str) -> list[tuple[str, str | None]]:
    """(module, name or None) for every module of the package one statement imports.

    ``from X import name`` is an import of the submodule ``X.name`` if there is one, else of
    ``X`` for its attribute ``name`` — and also of the module that a package's ``_LAZY``
    table loads ``name`` from.
    """
    if isinstance(statement, ast.Import):
        found = (resolver.module(alias.name) for alias in statement.names)
        return [(module, None) for module in found if module is not None]
    if statement.level:
        parts = here.split(".")
        parts = parts[:len(parts) - statement.level + 1]
        origin = ".".join(parts + ([statement.module] if statement.module else []))
    else:
        origin = statement.module or ""
    source = resolver.module(origin)
    if source is None:
        return []
    targets: list[tuple[str, str | None]] = []
    for alias in statement.names:
        submodule = resolver.module(f"{origin}.{alias.name}")
        if submodule is not None:
            targets.append((submodule, None))
            continue
        targets.append((source, alias.name))
        lazy = resolver.lazy_target(source, alias.name)
        if lazy is not None:
            targets.append((lazy, None))
    return targets


def read_imports(src: Path = SRC, package: str = PACKAGE) -> list[Import]:
    """Every import of a module of ``package`` by a module of ``package``."""
    resolver = _Resolver(src, package)
    found = []
    for importer, path in resolver.modules.items():
        source = path.read_text(encoding="utf-8")
        comments, comment_only = _comment_lines(source)
        here = package_of(resolver.modules, importer)
        for statement, late, typing in _statements(ast.parse(source, str(path))):
            end = statement.end_lineno or statement.lineno
            commented = (statement.lineno - 1 in comment_only
                         or bool(comments & set(range(statement.lineno, end + 1))))
            found += [Import(importer, target, statement.lineno, end, name, late, typing,
                             commented)
                      for target, name in _targets(statement, resolver, here)]
    return found


# ---- the checkers ------------------------------------------------------------------------------
def find_cycles(imports: Iterable[Import]) -> list[list[str]]:
    """The import cycles: strongly connected components of more than one module, and modules
    that import themselves (Tarjan's algorithm)."""
    graph: dict[str, set[str]] = {}
    for edge in imports:
        graph.setdefault(edge.importer, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                connect(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                components.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph) + 100))
    try:
        for node in sorted(graph):
            if node not in index:
                connect(node)
    finally:
        sys.setrecursionlimit(limit)
    return sorted(components)


def describe_cycles(cycles: list[list[str]], imports: Iterable[Import]) -> str:
    """The cycles with the import statements that make them."""
    lines = []
    imports = list(imports)
    for cycle in cycles:
        members = set(cycle)
        lines.append("cycle: " + " ↔ ".join(cycle))
        lines += [f"    {edge}" for edge in imports
                  if edge.importer in members and edge.target in members]
    return "\n".join(lines)


BASE = {"gradsight", "gradsight.errors", "gradsight.io", "gradsight.activations",
        "gradsight.optim"}
WINGS = ("calculus", "engine", "diagnostics", "adapters", "lab", "present", "play",
         "integrations", "cli")
ALL_WINGS = {"base", *WINGS}
#: wing → the wings its modules may import
ALLOWED = {
    "base": {"base"},
    "calculus": {"base", "calculus"},
    "engine": {"base", "engine"},
    "diagnostics": {"base", "engine", "calculus", "diagnostics"},
    "adapters": {"base", "engine", "diagnostics", "adapters"},
    "lab": {"base", "engine", "diagnostics", "calculus", "lab"},
    "present": ALL_WINGS - {"cli", "play", "integrations"},
    # the training-framework callbacks and trackers: they watch (adapters) and write the
    # report of a run (present)
    "integrations": {"base", "engine", "diagnostics", "adapters", "present", "integrations"},
    # the playground's server: it may use the wings below it (the lab's experiments for the
    # vanishing view, the presentation's walkthroughs), never the cli
    "play": {"base", "engine", "calculus", "diagnostics", "lab", "present", "play"},
    "cli": ALL_WINGS,
}


def wing_of(module: str, package: str = PACKAGE) -> str | None:
    """The wing of a module: ``base`` for the shared modules at the bottom, else its folder."""
    if module in {m.replace(PACKAGE, package, 1) for m in BASE}:
        return "base"
    parts = module.split(".")
    if len(parts) > 1 and parts[0] == package and parts[1] in WINGS:
        return parts[1]
    return None


def wrong_way_imports(imports: Iterable[Import], modules: Iterable[str],
                      package: str = PACKAGE) -> list[str]:
    """Imports that point up or across the wings, and modules that belong to no wing."""
    homeless = [f"{module} belongs to no wing" for module in sorted(modules)
                if wing_of(module, package) is None]
    problems = []
    for edge in imports:
        source, target = wing_of(edge.importer, package), wing_of(edge.target, package)
        if source is None or target is None or edge.importer == edge.target:
            continue
        if target not in ALLOWED[source]:
            problems.append(f"{edge}  ({source} → {target})")
        elif edge.importer == package and edge.target != f"{package}.errors":
            problems.append(f"{edge}  (the root package imports only errors)")
    return homeless + sorted(problems, key=_by_module_and_line)


def fast_imports_from_readable_engine(imports: Iterable[Import],
                                      package: str = PACKAGE) -> list[str]:
    """Imports of ``engine.fast`` by the readable engine, except by ``engine.train``."""
    engine, fast = f"{package}.engine", f"{package}.engine.fast"

    def inside(module: str, folder: str) -> bool:
        return module == folder or module.startswith(folder + ".")

    return [str(edge) for edge in imports
            if inside(edge.importer, engine) and not inside(edge.importer, fast)
            and edge.importer != f"{engine}.train" and inside(edge.target, fast)]


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_imports(imports: Iterable[Import], modules: dict[str, Path]) -> list[str]:
    """Private names (``_name``, or a module ``_mod``) imported from another package.

    A private module or package ``pkg._mod`` belongs to ``pkg`` (and to what is inside it);
    a private name of module ``pkg.mod`` belongs to ``pkg``.
    """
    problems = []
    for edge in imports:
        here = package_of(modules, edge.importer)
        parts = edge.target.split(".")
        first = next((i for i, part in enumerate(parts) if _private(part)), None)
        owner = None
        if first is not None:
            private = ".".join(parts[:first + 1])
            if not (here == private or here.startswith(private + ".")):
                owner = ".".join(parts[:first])
        if owner is None and edge.name is not None and _private(edge.name):
            owner = package_of(modules, edge.target)
        if owner is not None and here != owner:
            problems.append(f"{edge}  (private to {owner})")
    return problems


#: the wings whose modules may import a gradsight module inside a function
LATE_WINGS = {"cli", "present", "play", "adapters", "lab", "integrations"}


def uncommented_late_imports(imports: Iterable[Import]) -> list[str]:
    """Late imports of a gradsight module without a comment that says why."""
    seen = set()
    for edge in imports:
        if edge.late and not edge.commented:
            seen.add(f"{edge.importer}:{edge.line}")
    return sorted(seen, key=_by_module_and_line)


def misplaced_late_imports(imports: Iterable[Import], package: str = PACKAGE) -> list[str]:
    """Late imports of a gradsight module outside the wings that may import late."""
    return sorted({str(edge) for edge in imports
                   if edge.late and wing_of(edge.importer, package) not in LATE_WINGS},
                  key=_by_module_and_line)


def _by_module_and_line(text: str) -> tuple[str, int]:
    module, _, rest = text.partition(":")
    return module, int(rest.split(" ", 1)[0])


# ---- the package itself ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return read_imports()


def _report(title: str, problems: list[str]) -> str:
    return f"{title} ({len(problems)}):\n" + "\n".join(f"  {p}" for p in problems)


def test_the_graph_is_read(imports) -> None:
    # guards the checkers against a reader that sees nothing
    edges = {(edge.importer, edge.target) for edge in imports}
    assert ("gradsight", "gradsight.errors") in edges
    assert any(edge.late for edge in imports)
    assert len(module_files(SRC, PACKAGE)) > 50


def test_no_import_cycles(imports) -> None:
    cycles = find_cycles(edge for edge in imports if not edge.typing_only)
    assert not cycles, describe_cycles(cycles, imports)


def test_imports_point_down_the_wings(imports) -> None:
    problems = wrong_way_imports(imports, module_files(SRC, PACKAGE))
    assert not problems, _report("imports against the direction of the wings", problems)


def test_readable_engine_never_imports_the_fast_engine(imports) -> None:
    problems = fast_imports_from_readable_engine(imports)
    assert not problems, _report(
        "the readable engine imports engine.fast (only engine.train may, to choose the "
        "step once per fit)", problems)


def test_no_private_name_crosses_a_package(imports) -> None:
    problems = private_imports(imports, module_files(SRC, PACKAGE))
    assert not problems, _report("private names imported from another package", problems)


def test_every_late_import_says_why(imports) -> None:
    problems = uncommented_late_imports(imports)
    assert not problems, _report(
        "imports inside a function without a comment (same line or the line above)", problems)


def test_late_imports_only_in_the_outer_wings(imports) -> None:
    problems = misplaced_late_imports(imports)
    assert not problems, _report(
        f"imports of gradsight modules inside functions outside {sorted(LATE_WINGS)}", problems)


# ---- the old module names ----------------------------------------------------------------------
def _aliases() -> dict[str, str]:
    return _literal_dict(SRC / PACKAGE / "__init__.py", "ALIASES")


def test_the_aliases_are_read_from_the_package() -> None:
    import gradsight

    assert _aliases() == gradsight.ALIASES and "gradsight.nn" in _aliases()


@pytest.mark.parametrize("old,new", sorted(_aliases().items()))
def test_an_old_name_is_its_new_module(old: str, new: str) -> None:
    if new.startswith("gradsight.adapters.torch"):
        pytest.importorskip("torch")
    assert importlib.import_module(old) is importlib.import_module(new)
    assert sys.modules[old] is sys.modules[new]
    assert sys.modules[new].__spec__.name == new


def test_submodules_of_an_old_name_are_the_new_submodules() -> None:
    import gradsight.engine.layers
    import gradsight.nn.layers

    assert gradsight.nn.layers is gradsight.engine.layers
    from gradsight.nn.layers import Dense

    assert Dense is gradsight.engine.layers.Dense
    from gradsight.plots.training import plot_history
    from gradsight.present.plots.training import plot_history as new_plot_history

    assert plot_history is new_plot_history


def test_torch_adapter_by_its_old_name() -> None:
    pytest.importorskip("torch")
    from gradsight.adapters.torch import watch as new_watch
    from gradsight.torch_adapter import watch

    assert watch is new_watch


_FIRST_THROUGH_THE_ALIAS = """
import importlib, json, sys
import gradsight
old, new = sys.argv[1], sys.argv[2]
via_alias = importlib.import_module(old)   # the alias first: the new name is not loaded yet
print(json.dumps({"same": via_alias is importlib.import_module(new),
                  "spec": via_alias.__spec__.name, "name": via_alias.__name__,
                  "in_modules": sys.modules.get(new) is via_alias}))
"""


@pytest.mark.parametrize("old,new", [("gradsight.nn", "gradsight.engine"),
                                     ("gradsight.nn.layers", "gradsight.engine.layers"),
                                     ("gradsight.train", "gradsight.engine.train"),
                                     ("gradsight.plots.training",
                                      "gradsight.present.plots.training"),
                                     ("gradsight.expr", "gradsight.calculus.expr")])
def test_a_module_imported_first_by_its_old_name_keeps_its_real_name(old, new) -> None:
    # a fresh interpreter, so that the alias really is the first import of the module
    done = subprocess.run([sys.executable, "-c", _FIRST_THROUGH_THE_ALIAS, old, new],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"same": True, "spec": new, "name": new,
                                       "in_modules": True}


# ---- the checkers on a package made to break them ----------------------------------------------
def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    """A package ``toy`` with the same wings, and one sin of every kind."""
    _write(tmp_path, {
        "toy/__init__.py": """
            from .errors import ToyError
            ALIASES = {"toy.nn": "toy.engine"}
        """,
        "toy/errors.py": "class ToyError(Exception): ...\n",
        "toy/io.py": "from . import errors\n",
        "toy/calculus/__init__.py": "",
        "toy/calculus/a.py": "from . import b\n",  # a ↔ b: a cycle
        "toy/calculus/b.py": "from .a import thing\n",
        "toy/engine/__init__.py": "from .layers import Dense\n",
        "toy/engine/layers.py": """
            from ..errors import ToyError
            from .fast import kernel  # the readable engine using the fast one

            class Dense: ...
        """,
        "toy/engine/train.py": """
            from .fast import kernel

            def fit():
                from ..diagnostics import monitor  # not allowed here, comment or not
                return monitor
        """,
        "toy/engine/fast/__init__.py": "",
        "toy/engine/fast/kernel.py": "from . import _blas\n",
        "toy/engine/fast/_blas.py": "def _helper(): ...\n",
        "toy/engine/self_loop.py": "from toy.engine import self_loop\n",
        "toy/diagnostics/__init__.py": '_LAZY = {"Monitor": "monitor"}\n',
        "toy/diagnostics/monitor.py": """
            from ..engine.fast._blas import _helper   # private, another package
            from ..engine.fast import _blas           # a private module of another package
            from ..nn import Dense                    # through the old name: engine
            from toy.cli import app                   # up: diagnostics never imports cli
            from . import _own
            from ._own import _same_package           # private, same package: fine
            from .. import __doc__ as documentation   # dunder: fine
        """,
        "toy/diagnostics/_own.py": "_same_package = 1\n",
        "toy/present/__init__.py": "",
        "toy/present/plots.py": """
            from typing import TYPE_CHECKING

            from .. import diagnostics

            if TYPE_CHECKING:
                from ..cli import app


            def draw():
                from ..diagnostics import Monitor
                import numpy  # another library: never counted

                # late: the diagnostics pull in the engine
                from ..diagnostics import monitor
                from .. import io  # said for this line only
                from .. import errors
                return Monitor, monitor, numpy, app, io, errors
        """,
        "toy/cli/__init__.py": "app = None\n",
        "toy/extra/__init__.py": "",
    })
    return tmp_path


def test_reader_resolves_relative_aliased_lazy_and_late_imports(toy: Path) -> None:
    found = read_imports(toy, "toy")
    edges = {(edge.importer, edge.target, edge.name) for edge in found}
    assert ("toy.io", "toy.errors", None) in edges  # `from . import errors` is the module
    assert ("toy.calculus.a", "toy.calculus.b", None) in edges
    assert ("toy.calculus.b", "toy.calculus.a", "thing") in edges
    assert ("toy.diagnostics.monitor", "toy.engine", "Dense") in edges  # toy.nn is toy.engine
    assert ("toy.present.plots", "toy.diagnostics.monitor", None) in edges  # _LAZY followed
    late = {(e.importer, e.line, e.commented) for e in found if e.late}
    assert late == {("toy.engine.train", 5, True), ("toy.present.plots", 11, False),
                    ("toy.present.plots", 15, True), ("toy.present.plots", 16, True),
                    ("toy.present.plots", 17, False)}
    typing = [edge for edge in found if edge.typing_only]
    assert [(e.importer, e.target) for e in typing] == [("toy.present.plots", "toy.cli")]
    assert not any("numpy" in edge.target for edge in found)


def test_cycles_are_found(toy: Path) -> None:
    found = read_imports(toy, "toy")
    cycles = find_cycles(found)
    assert cycles == [["toy.calculus.a", "toy.calculus.b"], ["toy.engine.self_loop"]]
    text = describe_cycles(cycles, found)
    assert "toy.calculus.a:1 imports toy.calculus.b" in text
    assert "toy.calculus.b:1 imports toy.calculus.a.thing" in text
    assert find_cycles(e for e in found if e.importer.startswith("toy.present")) == []


def test_wrong_way_imports_are_found(toy: Path) -> None:
    problems = wrong_way_imports(read_imports(toy, "toy"), module_files(toy, "toy"), "toy")
    assert problems == [
        "toy.extra belongs to no wing",
        "toy.diagnostics.monitor:5 imports toy.cli.app  (diagnostics → cli)",
        "toy.engine.train:5 imports toy.diagnostics.monitor  (engine → diagnostics)",
        "toy.present.plots:7 imports toy.cli.app  (present → cli)",
    ]


def test_the_root_package_imports_only_errors(tmp_path: Path) -> None:
    _write(tmp_path, {"toy/__init__.py": "from . import errors, io\n",
                      "toy/errors.py": "", "toy/io.py": ""})
    problems = wrong_way_imports(read_imports(tmp_path, "toy"), ["toy"], "toy")
    assert problems == ["toy:1 imports toy.io  (the root package imports only errors)"]


def test_fast_engine_imports_of_the_readable_engine_are_found(toy: Path) -> None:
    problems = fast_imports_from_readable_engine(read_imports(toy, "toy"), "toy")
    assert problems == ["toy.engine.layers:3 imports toy.engine.fast.kernel"]


def test_private_imports_across_packages_are_found(toy: Path) -> None:
    problems = private_imports(read_imports(toy, "toy"), module_files(toy, "toy"))
    assert problems == [
        "toy.diagnostics.monitor:2 imports toy.engine.fast._blas._helper  "
        "(private to toy.engine.fast)",
        "toy.diagnostics.monitor:3 imports toy.engine.fast._blas  (private to toy.engine.fast)",
    ]


def test_private_modules_inside_a_private_package(tmp_path: Path) -> None:
    _write(tmp_path, {"toy/__init__.py": "", "toy/a/__init__.py": "",
                      "toy/a/_inner/__init__.py": "", "toy/a/_inner/x.py": "from . import y\n",
                      "toy/a/_inner/y.py": "", "toy/a/user.py": "from ._inner import x\n",
                      "toy/b.py": "from .a._inner import y\n"})
    problems = private_imports(read_imports(tmp_path, "toy"), module_files(tmp_path, "toy"))
    assert problems == ["toy.b:1 imports toy.a._inner.y  (private to toy.a)"]


def test_uncommented_and_misplaced_late_imports_are_found(toy: Path) -> None:
    found = read_imports(toy, "toy")
    # a comment at the end of the line above belongs to that line's import, not to this one
    assert uncommented_late_imports(found) == ["toy.present.plots:11", "toy.present.plots:17"]
    assert misplaced_late_imports(found, "toy") == [
        "toy.engine.train:5 imports toy.diagnostics.monitor"]

"""The package's layout keeps its design: no import cycles between modules (function-level imports
count too), folders that only import downwards, no private names imported across modules, no
``print`` and no root-logger changes in library code, and tests that mirror the package."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "nnprune"

# Lower layers first; a folder may import from its own layer and the ones before it.
LAYERS = [
    {"errors", "registry", "io_utils", "settings", "launch", "phases"},  # base utilities (modules of the package root)
    {"pruning_core", "tasks"},  # the engine, and the task adapters (independent of each other)
    {"measure"},  # counting, FLOPs, timing, quantization
    {"export"},  # ONNX
    {"report"},  # model cards and pictures of a pruned checkpoint
    {"api"},  # the public API's implementation (``import nnprune`` exports it)
    {"workflows"},  # what the commands run
    {"cli"},
]
INDEPENDENT = [("pruning_core", "tasks")]


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PKG.rglob("*.py")}


def _imports(path: Path, name: str, known: set[str]) -> list[tuple[str, list[str]]]:
    """(imported module, imported names) of every import in the file, resolved to modules of
    the package (``from nnprune.x import y`` counts as ``nnprune.x.y`` when that is a module)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.startswith("nnprune")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            if not base.startswith("nnprune"):
                continue
            names = [a.name for a in node.names]
            subs = [f"{base}.{n}" for n in names if f"{base}.{n}" in known]
            out += [(s, []) for s in subs]
            rest = [n for n in names if f"{base}.{n}" not in known]
            if rest or not subs:
                out.append((base, rest))
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        for target, _ in _imports(path, name, known):
            # ``import nnprune.a.b`` also runs nnprune.a's __init__: edges to real modules only.
            if target in known and target != name:
                graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _folder(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_modules():
    graph = _graph()
    assert len(graph) > 30  # the walk found the package
    assert _cycles(graph) == []


def test_folders_import_only_downwards():
    rank = {name: i for i, layer in enumerate(LAYERS) for name in layer}
    bad = []
    for src, targets in _graph().items():
        a = _folder(src)
        if a not in rank:
            continue
        for dst in targets:
            b = _folder(dst)
            if b in rank and rank[b] > rank[a]:
                bad.append(f"{src} -> {dst}")
            if (a, b) in INDEPENDENT or (b, a) in INDEPENDENT:
                bad.append(f"{src} -> {dst}")
    assert bad == []


def test_every_module_sits_in_a_layer():
    rank = {name for layer in LAYERS for name in layer}
    assert {m for m in (_folder(x) for x in _modules()) if m} <= rank | {"__main__"}


def test_no_private_names_imported_across_modules():
    mods = _modules()
    bad = []
    for name, path in mods.items():
        for target, names in _imports(path, name, set(mods)):
            bad += [f"{name}: {target}.{n}" for n in names if n.startswith("_") and target != name]
            last = target.rpartition(".")[2]
            if last.startswith("_") and not last.startswith("__"):
                bad.append(f"{name}: {target}")
    assert bad == []


def test_library_code_neither_prints_nor_touches_the_root_logger():
    bad = []
    for name, path in _modules().items():
        if name.startswith("nnprune.cli") or name == "nnprune.__main__":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                f = node.func
                if isinstance(f, ast.Name) and f.id == "print":
                    bad.append(f"{name}:{node.lineno} print")
                if (isinstance(f, ast.Attribute) and f.attr in ("basicConfig", "getLogger")
                        and isinstance(f.value, ast.Name) and f.value.id == "logging"
                        and (f.attr == "basicConfig" or not node.args)):
                    bad.append(f"{name}:{node.lineno} root logger")
    assert bad == []


def test_library_code_reads_no_environment_variable_that_changes_results():
    """Results depend on arguments and files only; the environment reads allowed are the
    launcher's RANK (which process saves) and WORLD_SIZE (how many processes share a step)."""
    bad = []
    for name, path in _modules().items():
        text = path.read_text()
        for line_no, line in enumerate(text.splitlines(), 1):
            if ("os.environ" in line or "getenv" in line) and "setdefault" not in line \
                    and '"RANK"' not in line and '"WORLD_SIZE"' not in line:
                bad.append(f"{name}:{line_no}")
    assert bad == []


def test_tests_mirror_the_package():
    folders = {p.name for p in PKG.iterdir() if p.is_dir() and not p.name.startswith("__")}
    tests = {p.name for p in (REPO / "tests").iterdir() if p.is_dir() and not p.name.startswith("__")}
    assert folders <= tests, f"test folders missing for {sorted(folders - tests)}"
    for folder in folders & tests:
        assert list((REPO / "tests" / folder).glob("test_*.py")), folder


# The engine: reached from the commands only through the public API (``from nnprune import X``).
ENGINE = {"pruning_core", "measure", "export", "api"}


def _engine_imports() -> dict[str, set[str]]:
    mods = _modules()
    found: dict[str, set[str]] = {}
    for name, path in mods.items():
        if _folder(name) not in ("workflows", "cli"):
            continue
        for target, _ in _imports(path, name, set(mods)):
            if _folder(target) in ENGINE:
                found.setdefault(name, set()).add(target)
    return found


def test_commands_reach_the_engine_only_through_the_public_api():
    """cli -> workflows -> ``import nnprune`` (the public API) -> engine: the commands are built
    on what a user's own script can call."""
    assert _engine_imports() == {}, "import these through `from nnprune import`"


def test_the_public_api_names_exist_and_the_commands_use_only_them():
    import nnprune

    assert all(hasattr(nnprune, n) for n in nnprune.__all__)
    mods = _modules()
    used = {n for name, path in mods.items() if _folder(name) in ("workflows", "cli")
            for target, names in _imports(path, name, set(mods)) if target == "nnprune"
            for n in names}
    assert used and used <= set(nnprune.__all__), sorted(used - set(nnprune.__all__))

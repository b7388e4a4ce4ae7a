"""The shape of the house, read from the source: no import cycle among netopt's modules, the
pure packages (`probes/`, `topology/`) never import `netopt/` nor each other, `topology/` does
no I/O, and `netopt/`'s top level stays small enough to see the architecture in folder names.

Every import counts: module level, under `if TYPE_CHECKING:`, and inside functions (an
in-function import is a cycle postponed, not a cycle removed). `from netopt.api import x` is an
import of the module `netopt.api.x` when `x` is a module, else of the package `netopt.api`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import networkx as nx

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("netopt", "probes", "topology")
MAX_TOP_LEVEL_MODULES = 8

# What `topology/` may not import: sockets, files, processes, the clock, randomness of the OS.
IO_MODULES = frozenset(
    {
        "asyncio", "datetime", "io", "os", "pathlib", "random", "requests", "aiohttp",
        "select", "shutil", "socket", "sqlite3", "subprocess", "sys", "tempfile", "threading",
        "time", "urllib", "scapy", "yaml", "logging",
    }
)  # fmt: skip


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path) -> dict[str, Path]:
    """Every module of the three packages under root, by dotted name."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            found[module_name(path, root)] = path
    return found


def imported(name: str, path: Path, known: set[str]) -> Iterator[str]:
    """The names of the modules `name` (at path) imports, everywhere in its body."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = name.split(".")
                base = parts if is_package else parts[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield sub if sub in known else target


def import_graph(root: Path) -> nx.DiGraph:
    """Modules of netopt, probes and topology, an edge for each import between two of them
    (an import of `a.b.c` that is not a module of ours counts as its nearest module: `a.b`)."""
    found = modules(root)
    known = set(found)
    graph: nx.DiGraph = nx.DiGraph()
    graph.add_nodes_from(known)
    for name, path in found.items():
        for target in imported(name, path, known):
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                graph.add_edge(name, target)
    return graph


def external_imports(root: Path, package: str) -> dict[str, set[str]]:
    """Each module of package → the top-level names it imports from outside our packages."""
    found = modules(root)
    known = set(found)
    out: dict[str, set[str]] = {}
    for name, path in found.items():
        if name.split(".")[0] != package:
            continue
        tops = {t.split(".")[0] for t in imported(name, path, known) if t}
        out[name] = tops - set(PACKAGES) - {"__future__"}
    return out


def cycles(graph: nx.DiGraph) -> list[list[str]]:
    """Each set of modules that import each other in a ring (directly or not), sorted."""
    return sorted(sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1)


def describe(graph: nx.DiGraph, tangle: list[str]) -> str:
    ring = [a for a, _ in nx.find_cycle(graph.subgraph(tangle))]
    return f"{', '.join(tangle)}\n  e.g. {' → '.join([*ring, ring[0]])}"


def crossings(graph: nx.DiGraph) -> list[tuple[str, str]]:
    """Imports from a pure package (probes, topology) into another of our packages."""
    return sorted(
        (a, b)
        for a, b in graph.edges
        if a.split(".")[0] in ("probes", "topology") and b.split(".")[0] != a.split(".")[0]
    )


def io_imports(root: Path) -> dict[str, list[str]]:
    """Modules of topology importing I/O or the clock, and what they import."""
    found = {m: sorted(tops & IO_MODULES) for m, tops in external_imports(root, "topology").items()}
    return {m: bad for m, bad in found.items() if bad}


def test_no_import_cycle_among_netopt_modules() -> None:
    graph = import_graph(REPO)
    found = cycles(graph)
    assert found == [], "import cycles among:\n" + "\n".join(describe(graph, c) for c in found)


def test_pure_packages_never_import_netopt_nor_each_other() -> None:
    assert crossings(import_graph(REPO)) == []


def test_topology_does_no_io_and_reads_no_clock() -> None:
    assert io_imports(REPO) == {}


def test_netopt_top_level_is_small() -> None:
    top = sorted(p.name for p in (REPO / "netopt").glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


# --- the checker itself, on a made-up tree ---------------------------------------------------


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for package in PACKAGES:
        (root / package).mkdir(exist_ok=True)
        (root / package / "__init__.py").touch()
    return root


def test_checker_sees_cycles_through_type_checking_and_function_imports(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "netopt/a/__init__.py": "",
            "netopt/a/x.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from netopt.b import y\n",
            "netopt/b/__init__.py": "",
            "netopt/b/y.py": "def f():\n    from ..a import x\n",
            "netopt/c.py": "from netopt.a import x\n",
        },
    )
    assert cycles(import_graph(root)) == [["netopt.a.x", "netopt.b.y"]]


def test_checker_resolves_packages_and_names(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "netopt/s/__init__.py": "from netopt.s.m import Thing\n",
            "netopt/s/m.py": "import netopt.errors\n",
            "netopt/errors.py": "",
            "netopt/u.py": "from netopt.s import Thing\nfrom . import errors\n",
            "probes/p.py": "import netopt.u\nimport time\n",
            "topology/t.py": "from probes import p\nimport socket\n",
        },
    )
    graph = import_graph(root)
    assert set(graph.successors("netopt.u")) == {"netopt.s", "netopt.errors"}
    assert set(graph.successors("netopt.s")) == {"netopt.s.m"}
    assert set(graph.successors("topology.t")) == {"probes.p"}
    assert cycles(graph) == []
    assert crossings(graph) == [("probes.p", "netopt.u"), ("topology.t", "probes.p")]
    assert io_imports(root) == {"topology.t": ["socket"]}

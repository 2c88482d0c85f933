"""The package's layers (import-linter contracts in pyproject.toml) hold, and no two modules import each other,
directly or through others (issue 11 item 4). docs/architecture.md explains the layers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _graph():
    grimp = pytest.importorskip("grimp", reason="grimp comes with import-linter (the test extra)")
    return grimp.build_graph("vlmhub", exclude_type_checking_imports=True)  # `if TYPE_CHECKING:` imports never run


def _strongly_connected(nodes, edges):
    """Tarjan's strongly connected components with more than one member (an import cycle each)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # iterative deepening is not needed: the package is ~100 modules deep at most
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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

    for n in sorted(nodes):
        if n not in index:
            visit(n)
    return out


def test_cycle_finder_finds_a_planted_cycle():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _strongly_connected(["a", "b", "c", "d"], edges) == [["a", "b", "c"]]
    assert _strongly_connected(["a", "b"], {"a": {"b"}}) == []


def test_no_import_cycles_between_modules():
    g = _graph()
    # `from . import x` inside a package's module also records an import of the package itself, whose __init__
    # re-exports its modules; such module -> own ancestor package edges are not cycles of the code
    modules = set(g.modules)
    edges = {m: {d for d in g.find_modules_directly_imported_by(m) if d in modules and not m.startswith(d + ".")}
             for m in modules}
    cycles = _strongly_connected(modules, edges)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_import_linter_contracts_hold():
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        pytest.fail(f"lint-imports is not installed beside {sys.executable}; run `pip install -e '.[test]'`")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([str(exe), "--config", str(ROOT / "pyproject.toml"), "--no-cache"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout and "vlmhub layers KEPT" in r.stdout

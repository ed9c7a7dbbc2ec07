"""Figures of the library's import graph (`pipelines/` and `rewards/`), read from the source with `ast`.

    python bench/import_graph.py [--root DIR] [--json]

Every `import` / `from ... import` statement that names a module of the two packages is an edge, wherever it
stands (module level or inside a function: a lazy import is still a dependency), and so is a string constant that is
exactly a module's dotted name (a dynamic import by name, e.g. a table of commands). `from pkg import name` points at
`pkg.name` when that is a module, else at `pkg` (its `__init__`). Imports under `if TYPE_CHECKING:` are left out.

Printed:
- modules: the `.py` files of the two packages (packages' `__init__.py` count as modules);
- edges: distinct (importer, imported) pairs;
- layers: the longest import chain, in modules, with each cycle counted as one node (a module that imports no
  library module is on layer 1; every other sits one layer above the highest module it imports);
- the longest chain itself (one of them);
- imports that run back up: import statements that do not point at a lower layer than the importer's (only
  possible inside a cycle, where every module shares one layer);
- cycles: the strongly connected groups of modules (listed), counted by group;
- lines of library code: lines that are neither blank nor comment-only (and all lines, for reference).
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

PACKAGES = ("pipelines", "rewards")


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every `.py` under the packages (tests and assets are not library code)."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _walk(tree: ast.AST):
    """(node, at_module_level) for every import statement, skipping `if TYPE_CHECKING:` blocks."""
    def visit(node, top):
        for child in ast.iter_child_nodes(node):
            if _type_checking_block(child):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, top
            nested = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            yield from visit(child, top and not nested)
    yield from visit(tree, True)


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, bool, int]]:
    """(imported module, at module level, line) for each library module an import statement of `name` names."""
    is_pkg = path.name == "__init__.py"
    here = name.split(".") if is_pkg else name.split(".")[:-1]
    out = []
    tree = ast.parse(path.read_text(), str(path))
    for node, top in _walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            if node.level:
                base = here[:len(here) - (node.level - 1)] if node.level > 1 else list(here)
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        for target in dict.fromkeys(targets):
            # `import pipelines.a.b` names pipelines.a.b; fall back to the longest prefix that is a module
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.append((target, top, node.lineno))
    # a string that is exactly a library module's name is a dynamic import (`importlib.import_module(NAME)`, a table
    # of commands); counted as a lazy edge, so that a string cannot hide a dependency
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in modules \
                and node.value != name:
            out.append((node.value, False, node.lineno))
    return out


def strongly_connected(nodes, edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; returns the groups (each sorted)."""
    index, low, on_stack, stack, groups = {}, {}, set(), [], []
    counter = 0
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    groups.append(sorted(group))
    return groups


def layers(nodes, edges: dict[str, set[str]]) -> dict[str, int]:
    """Layer of each module: 1 + the highest layer it imports, each cycle collapsed into one node."""
    groups = strongly_connected(nodes, edges)
    group_of = {m: i for i, g in enumerate(groups) for m in g}
    # Tarjan emits a group only after every group it reaches, so one pass in emission order suffices.
    depth = []
    for i, group in enumerate(groups):
        below = {group_of[t] for m in group for t in edges[m]} - {i}
        depth.append(1 + max((depth[j] for j in below), default=0))
    return {m: depth[group_of[m]] for m in nodes}


def longest_chain(layer: dict[str, int], edges: dict[str, set[str]]) -> list[str]:
    """One chain of imports through every layer, from the top module down to layer 1."""
    node = min(m for m, d in layer.items() if d == max(layer.values()))
    chain = [node]
    while layer[node] > 1:
        down = sorted(t for t in edges[node] if layer[t] == layer[node] - 1)
        if not down:  # inside a cycle: step to the member of it that imports the next layer down
            down = sorted(t for t in edges[node] if layer[t] == layer[node] and t not in chain)
        node = down[0]
        chain.append(node)
    return chain


def figures(root: Path) -> dict:
    modules = module_files(root)
    statements = {name: imports_of(name, path, modules) for name, path in modules.items()}
    edges = {name: {t for t, _, _ in found} for name, found in statements.items()}
    layer = layers(modules, edges)
    cycles = [g for g in strongly_connected(modules, edges) if len(g) > 1]
    back_up = sorted((name, target, line) for name, found in statements.items() for target, top, line in found
                     if layer[target] >= layer[name])
    lines = code = 0
    for path in modules.values():
        for text in path.read_text().splitlines():
            lines += 1
            stripped = text.strip()
            code += bool(stripped) and not stripped.startswith("#")
    deepest = max(layer.values())
    return {
        "modules": len(modules),
        "modules_per_package": {p: sum(m.split(".")[0] == p for m in modules) for p in PACKAGES},
        "edges": sum(len(v) for v in edges.values()),
        "layers": deepest,
        "longest_chain": longest_chain(layer, edges),
        "imports_back_up": len(back_up),
        "imports_back_up_list": [f"{a}:{line} -> {b}" for a, b, line in back_up],
        "cycles": len(cycles),
        "cycles_list": cycles,
        "lines_of_code": code,
        "lines_total": lines,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent,
                   help="repository root holding pipelines/ and rewards/ (default: this checkout)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = p.parse_args(argv)
    f = figures(args.root)
    if args.json:
        print(json.dumps(f, indent=1))
        return 0
    per = ", ".join(f"{k} {v}" for k, v in f["modules_per_package"].items())
    print(f"modules: {f['modules']} ({per})")
    print(f"import edges: {f['edges']}")
    print(f"layers: {f['layers']}")
    print(f"  longest chain: {' -> '.join(f['longest_chain'])}")
    print(f"imports that run back up: {f['imports_back_up']}")
    for item in f["imports_back_up_list"]:
        print(f"  {item}")
    print(f"cycles: {f['cycles']}")
    for group in f["cycles_list"]:
        print(f"  {' <-> '.join(group)}")
    print(f"lines of library code: {f['lines_of_code']} (all lines {f['lines_total']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

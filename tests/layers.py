#!/usr/bin/env python3
"""The layer rule of src/: a module imports only from its own layer or the layers below it, and no
two modules depend on each other, directly or through others. The layers are the numbered list at
the top of src/lib.rs; the imports are the `crate::` and `super::` paths of each file (in `use`
lines and in code, `{...}` groups expanded). Prints each upward import and each loop, and exits 1
if there is any."""

import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"


def layers():
    """Top-level module -> layer number, from src/lib.rs' `//! N. `a`, `b`: ...` lines."""
    found = {}
    for line in (SRC / "lib.rs").read_text().splitlines():
        match = re.match(r"//! (\d+)\. (.*?):", line)
        if match:
            for name in re.findall(r"`(\w+)`", match.group(2)):
                found[name] = int(match.group(1))
    return found


def module_of(path):
    """src/a/b.rs -> ("a", "b"); src/a/mod.rs -> ("a",)."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "mod":
        parts.pop()
    return tuple(parts)


def expand(path):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e]."""
    match = re.match(r"^([\w:]*?)\{(.*)\}$", path)
    if not match:
        return [path]
    prefix, inner = match.groups()
    items, depth, start = [], 0, 0
    for i, ch in enumerate(inner + ","):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            item = inner[start:i].strip()
            if item:
                items.append(item)
            start = i + 1
    return [p for item in items for p in expand(prefix + item)]


def imports(path, module, modules):
    """The modules `path` (module `module`) names, each resolved to the deepest module it is in."""
    text = "\n".join(l for l in path.read_text().splitlines() if not l.strip().startswith("//"))
    text = re.sub(r"\s+", " ", text)
    named = set()
    for root, rest in re.findall(r"\b(crate|super)::((?:\w+::)*(?:\{[^;]*?\}|\w+))", text):
        for full in expand(rest):
            parts = tuple(p for p in full.split("::") if p not in ("self", "*"))
            if root == "super":
                # In a/b.rs and in a/mod.rs alike, super:: names a's parent... of the file's module.
                base = module[:-1]
                parts = base + parts
            target = max(
                (m for m in modules if parts[: len(m)] == m),
                key=len,
                default=None,
            )
            if target and target != module:
                named.add(target)
    return named


def loops(graph):
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def main():
    layer = layers()
    files = {module_of(p): p for p in SRC.rglob("*.rs") if p.name != "lib.rs"}
    modules = set(files)
    problems = []
    graph = {}
    for module, path in sorted(files.items()):
        if module[0] not in layer:
            # Test-only modules (cfg(test)) stand above every layer.
            if module[0] != "unit_tests":
                problems.append(f"{path.relative_to(SRC.parent)}: module {module[0]} is in no layer of src/lib.rs")
            continue
        graph[module] = imports(path, module, modules)
        for target in sorted(graph[module]):
            if layer.get(target[0], 0) > layer[module[0]]:
                problems.append(
                    f"upward import: {'::'.join(module)} (layer {layer[module[0]]}) names "
                    f"{'::'.join(target)} (layer {layer[target[0]]})"
                )
    for component in loops(graph):
        problems.append("loop: " + " <-> ".join("::".join(m) for m in component))
    for problem in problems:
        print(problem)
    if problems:
        sys.exit(1)
    print(f"layers: {len(graph)} modules in {len(set(layer.values()))} layers, no upward import, no loop")


main()

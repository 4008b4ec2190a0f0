"""The package layout: every import in the library follows the order in docs/DESIGN.md.

The order (docs/DESIGN.md, the fenced block after "Import order") lists the
packages bottom layer first; a module may import its own package and the
packages listed before its own, nothing after it. The test parses
every import of every module of `l3/` and `tfrecords/` (module level and
inside functions) with `ast`, and fails on an edge the order forbids and on
any cycle between packages.
"""

import ast
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DESIGN = os.path.join(REPO, "docs", "DESIGN.md")


def declared_order(text: str):
    """The packages of the 'Import order' block of DESIGN.md, bottom layer first."""
    match = re.search(r"Import order.*?```\n(.*?)```", text, re.S)
    assert match, "docs/DESIGN.md has no 'Import order' block"
    order = []
    for line in match.group(1).splitlines():
        name = line.split("#")[0].split()[0] if line.strip() else None
        if name:
            order.append(name)
    return order


def module_name(path: str) -> str:
    rel = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
    if rel.startswith("tfrecords"):
        rel = "l3_tfrecords" + rel[len("tfrecords"):]
    return rel[:-len(".__init__")] if rel.endswith(".__init__") else rel


def library_modules():
    for top in ("l3", "tfrecords"):
        for folder, _, files in os.walk(os.path.join(REPO, top)):
            for f in sorted(files):
                if f.endswith(".py"):
                    yield os.path.join(folder, f)


def imported_names(path: str):
    """Every name imported anywhere in the file, made absolute (`from a import b`
    gives `a.b`, which may be a module or an attribute)."""
    tree = ast.parse(open(path).read(), path)
    package = module_name(path).split(".")
    if not path.endswith("__init__.py"):
        package = package[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                parent = package[:len(package) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def package_of(name: str, packages):
    """The layer a dotted name belongs to (None: outside the library, or the root facade)."""
    parts = name.split(".")
    if parts[0] == "l3_tfrecords":
        return "l3_tfrecords"
    if parts[0] != "l3":
        return None
    if len(parts) > 1 and parts[1] in packages:
        return parts[1]
    return "l3"  # the root: l3/__init__.py, l3/hear.py, l3/_aliases.py


def edges(packages):
    """[(module, line, imported name, from package, to package)] between packages."""
    found = []
    for path in library_modules():
        module = module_name(path)
        source = package_of(module, packages)
        for line, name in imported_names(path):
            target = package_of(name, packages)
            if target is None or target == source:
                continue
            found.append((module, line, name, source, target))
    return found


def violations(order, found):
    rank = {p: i for i, p in enumerate(order)}
    bad = []
    for module, line, name, source, target in found:
        if source == "l3":          # the root facade may re-export anything
            continue
        if target == "l3" or rank[target] >= rank[source]:
            bad.append(f"{module}:{line} imports {name} ({source} may not import {target})")
    return bad


def cycles(found):
    graph = {}
    for _, _, _, source, target in found:
        graph.setdefault(source, set()).add(target)
    seen, stack, bad = set(), [], []

    def visit(node):
        if node in stack:
            bad.append(" -> ".join(stack[stack.index(node):] + [node]))
            return
        if node in seen:
            return
        seen.add(node)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            visit(nxt)
        stack.pop()

    for node in sorted(graph):
        visit(node)
    return bad


def test_every_package_is_in_the_order_and_the_order_is_the_tree():
    order = declared_order(open(DESIGN).read())
    on_disk = {d for d in os.listdir(os.path.join(REPO, "l3"))
               if os.path.isfile(os.path.join(REPO, "l3", d, "__init__.py"))}
    assert set(order) - {"l3_tfrecords"} == on_disk
    assert "l3_tfrecords" in order


def test_imports_follow_the_declared_order():
    order = declared_order(open(DESIGN).read())
    bad = violations(order, edges(set(order)))
    assert not bad, "imports against docs/DESIGN.md's order:\n" + "\n".join(bad)


def test_no_cycle_between_packages():
    order = declared_order(open(DESIGN).read())
    bad = cycles(edges(set(order)))
    assert not bad, "cycles between packages:\n" + "\n".join(bad)


def test_at_most_six_modules_at_the_top_of_l3():
    top = [f for f in os.listdir(os.path.join(REPO, "l3"))
           if f.endswith(".py") and f != "__init__.py"]
    assert len(top) <= 6, top


def test_the_checker_catches_a_planted_wrong_import(tmp_path):
    """A model module importing the training loop, and a cycle, are both reported."""
    order = ["core", "model", "train"]
    planted = [("l3.model.network", 3, "l3.train.loop.Trainer", "model", "train"),
               ("l3.train.loop", 5, "l3.model.network.build_avc_model", "train", "model")]
    assert violations(order, planted) == [
        "l3.model.network:3 imports l3.train.loop.Trainer (model may not import train)"]
    assert cycles(planted) == ["model -> train -> model"]


@pytest.mark.parametrize("old,new", [("l3.pair_ops", "l3.pairs.sampling"),
                                     ("l3.transfer.protocol", "l3.eval.transfer.protocol"),
                                     ("l3.corpus", "l3.demo.corpus")])
def test_old_import_paths_are_the_new_modules(old, new):
    import importlib
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert importlib.import_module(old) is importlib.import_module(new)
    assert any(new in str(w.message) for w in caught)

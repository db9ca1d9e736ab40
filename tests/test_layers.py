"""Dependencies point downwards (docs/design.md, "Layout and dependencies"): a module
imports, when it is imported, only from its own layer and the layers below."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "skal"

# lowest first, as in docs/design.md
LAYERS = [
    {"exceptions", "utils", "metrics", "labels", "plotting"},
    {"data", "preprocessing", "bagging", "finetune"},
    {"nets", "pretrain"},
    {"grad"},
    {"query"},
    {"learner"},
    {"ensemble", "campaign", "simulate", "estimator"},
    {"cli", "cli_campaign", "__main__"},
]
LEVEL = {name: level for level, names in enumerate(LAYERS) for name in names}


def _unit(path):
    """The top-level part of skal a file belongs to (``skal/query/tdgf.py``: query)."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return parts[0]


def _eager_imports(tree):
    """``ImportFrom`` nodes run on import: everywhere except inside functions."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(node, ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _targets(path, node):
    """The top-level parts of skal that one ``from ... import ...`` reads."""
    package = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package[:-1]
    if node.level:
        module = package[:len(package) - node.level + 1] + (node.module.split(".") if node.module else [])
    elif node.module and node.module.split(".")[0] == "skal":
        module = node.module.split(".")
    else:
        return []
    if len(module) > 1:
        return [module[1]]
    return [alias.name for alias in node.names]      # from skal import x / from . import x


FILES = sorted(p for p in ROOT.rglob("*.py") if p.parent != ROOT or p.name != "__init__.py")


def test_every_part_of_skal_has_a_layer():
    assert {_unit(p) for p in FILES} <= set(LEVEL)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_downwards(path):
    unit = _unit(path)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    upward = sorted({target for node in _eager_imports(tree) for target in _targets(path, node)
                     if target in LEVEL and LEVEL[target] > LEVEL[unit]})
    assert not upward, f"{path.relative_to(ROOT)} ({unit}) imports {upward} from above"


def test_query_takes_no_label_helpers_from_nets():
    for path in (ROOT / "query").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in _eager_imports(tree):
            if node.module and node.module.startswith(("nets.classifier", "nets.multilabel")):
                pytest.fail(f"query/{path.name} imports {node.module}; use skal.labels")

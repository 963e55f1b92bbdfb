"""The house rules of the package: small modules, imports in one direction, a top level that imports nothing heavy."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest


PACKAGE = Path(__file__).resolve().parents[1] / "hf_patchdist"
MAX_LINES = 600

# Lower layers never import higher ones. The rewriter's config sits below the Hub code, which sits below
# the Rewriter class (Rewriter.from_pretrained downloads, Rewriter.push_to_hub uploads).
LAYERS = [
    ["hf_patchdist", "hf_patchdist.import_utils"],
    ["hf_patchdist.models", "hf_patchdist.formats", "hf_patchdist.data", "hf_patchdist.patch_statistics"],
    ["hf_patchdist.generation", "hf_patchdist.verifiers"],
    ["hf_patchdist.scoring"],
    ["hf_patchdist.judge", "hf_patchdist.rewards", "hf_patchdist.rewriter.config"],
    ["hf_patchdist.hub"],
    ["hf_patchdist.rewriter"],
    ["hf_patchdist.evaluation"],
    ["hf_patchdist.trainers"],
    ["hf_patchdist.cli"],
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(name: str) -> set[str]:
    """Package modules that ``name`` imports at run time, at any depth of the file (function-level imports
    included: they hide a cycle, they do not remove it); ``if TYPE_CHECKING:`` blocks excluded."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for stmt in child.orelse:
                    visit(stmt)
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in child.names)
            visit(child)

    visit(ast.parse(path.read_text()))
    return {module for module in found if module in MODULES and module != name}


GRAPH = {name: _imports(name) for name in MODULES}


def _layer(name: str) -> int:
    best, depth = None, -1
    for index, layer in enumerate(LAYERS):
        for prefix in layer:
            if (name == prefix or name.startswith(prefix + ".")) and prefix.count(".") > depth:
                best, depth = index, prefix.count(".")
    assert best is not None, f"{name} is in no layer: add it to LAYERS"
    return best


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_too_long(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name]} has {lines} lines (at most {MAX_LINES}): split it by job"


def test_the_import_graph_sees_imports():
    # The walker itself must work, or the tests below pass on an empty graph.
    assert "hf_patchdist.rewriter.config" in GRAPH["hf_patchdist.hub.cards"]
    assert "hf_patchdist.hub.download" in GRAPH["hf_patchdist.rewriter.rewriter"]  # a function-level import
    assert "hf_patchdist.rewriter.rewriter" not in GRAPH["hf_patchdist.hub.upload"]  # TYPE_CHECKING only


def test_no_import_cycle():
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def walk(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for target in sorted(GRAPH[name]):
            if state.get(target) == 1:
                cycle = stack[stack.index(target) :] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                walk(target)
        stack.pop()
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            walk(name)


def test_imports_go_down_the_layers():
    upward = [
        f"{name} (layer {_layer(name)}) imports {target} (layer {_layer(target)})"
        for name, targets in GRAPH.items()
        for target in targets
        if _layer(target) > _layer(name)
    ]
    assert not upward, "imports against the layer order:\n" + "\n".join(sorted(upward))


@pytest.mark.parametrize("statement", ["import hf_patchdist", "import hf_patchdist.verifiers", "from hf_patchdist.generation import GenerationSettings"])
def test_light_imports_load_no_heavy_library(statement):
    code = f"import sys; {statement}; print(','.join(m for m in ('torch', 'transformers', 'datasets', 'trl') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent)
    assert result.stdout.strip() == "", f"`{statement}` imported {result.stdout.strip()}"


def test_every_public_name_resolves():
    import hf_patchdist

    for name in hf_patchdist.__all__:
        assert getattr(hf_patchdist, name) is not None, name


def test_deprecated_names_warn_and_are_the_new_classes():
    import hf_patchdist
    from hf_patchdist import trainers

    with pytest.warns(FutureWarning, match="DistributionPatchConfig"):
        assert hf_patchdist.PatchSFTConfig is hf_patchdist.DistributionPatchConfig
    with pytest.warns(FutureWarning, match="RewriterGRPOConfig"):
        assert trainers.RewriterTrainingConfig is trainers.RewriterGRPOConfig
    with pytest.raises(AttributeError):
        hf_patchdist.NoSuchName  # noqa: B018

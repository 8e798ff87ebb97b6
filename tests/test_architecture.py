"""The layers of ARCHITECTURE.md, checked on every import statement of every module.

Imports are read from the source (module level, inside functions and under TYPE_CHECKING
alike), so an edge cannot hide in a function body. A second check imports the modules the
batch driver and the reports rely on in a fresh interpreter and asserts torch stayed out.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("stylecore", "pipeline")

# What each layer may import of ours (besides itself). stylecore's torch-free leaves are
# the package (its names load lazily), the parameters, image files and atomic files.
TORCH_FREE_STYLECORE = ("stylecore", "stylecore.params", "stylecore.imageio", "stylecore.files")
ALLOWED = {
    "stylecore": (),
    "storage": TORCH_FREE_STYLECORE,
    "batch": ("pipeline.storage", "stylecore"),
    # The reports read results tables and run records through the batch engine's readers and schema,
    # and the parameter columns and presets from its one table of them.
    "reports": ("pipeline.storage", "stylecore", "pipeline.batch.results", "pipeline.batch.runs",
                "pipeline.batch.columns"),
    "cli": ("pipeline.batch", "pipeline.reports", "pipeline.storage", "stylecore"),
}
# stylecore is the algorithm alone: no cluster, storage, table or terminal libraries.
STYLECORE_FORBIDDEN = ("ray", "boto3", "botocore", "pyarrow", "typer", "rich", "pipeline")
# Imported by the batch driver or reports, which must start without torch. pipeline.batch.runner
# and pipeline.cli.submit join this list once the driver no longer reaches the worker's module.
TORCH_FREE = (*TORCH_FREE_STYLECORE, "pipeline.storage.store", "pipeline.storage.secrets",
              "pipeline.batch.manifest", "pipeline.batch.results", "pipeline.batch.naming",
              "pipeline.reports.report", "pipeline.reports.status", "pipeline.cli.app")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> Iterator[tuple[str, Path]]:
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            yield module_name(path), path


def imports(name: str, path: Path) -> Iterator[str]:
    """Every module `path` imports, absolute, wherever the statement is."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(filter(None, (base, node.module)))
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)  # `from pkg import module`


def layer(module: str) -> str | None:
    if module == "stylecore" or module.startswith("stylecore."):
        return "stylecore"
    parts = module.split(".")
    if parts[0] != "pipeline":
        return None
    if len(parts) == 1 or parts[1] == "__main__":
        return "cli"
    return parts[1] if parts[1] in ALLOWED else None


def within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def known(module: str) -> bool:
    """Whether `module` is one of ours that exists (a `from pkg import name` also yields pkg.name)."""
    relative = Path(*module.split("."))
    return (REPO / relative).with_suffix(".py").is_file() or (REPO / relative / "__init__.py").is_file()


def test_every_import_follows_the_layers():
    forbidden = []
    for name, path in modules():
        own = layer(name)
        assert own is not None, f"{name} belongs to no layer: add it to ARCHITECTURE.md and ALLOWED"
        for target in imports(name, path):
            if own == "stylecore" and within(target, STYLECORE_FORBIDDEN):
                forbidden.append(f"{name} -> {target}")
            target_layer = layer(target)
            if target_layer is None or target_layer == own or not known(target):
                continue
            if not within(target, ALLOWED[own]):
                forbidden.append(f"{name} -> {target}")
    assert not forbidden, "imports against the layers of ARCHITECTURE.md:\n" + "\n".join(forbidden)


def test_no_import_cycles_between_our_modules():
    graph = {name: sorted({target for target in imports(name, path) if layer(target) and known(target)} - {name})
             for name, path in modules()}
    cycles: list[str] = []
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "on the path"
        for target in graph.get(node, []):
            if state.get(target) == "on the path":
                cycles.append(" -> ".join([*trail[trail.index(target):], target]))
            elif target not in state:
                visit(target, [*trail, target])
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("module", TORCH_FREE)
def test_the_driver_and_report_modules_start_without_torch(module):
    done = subprocess.run([sys.executable, "-c", f"import sys, {module}; sys.exit('torch' in sys.modules)"],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, f"importing {module} imports torch{done.stderr and ': ' + done.stderr}"

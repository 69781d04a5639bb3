"""The package's layout is its data path: imports point one way, down the layers, and form no cycle.

QEMU process -> console lines -> guest shell and boot timeline -> measurements -> verdicts
-> report, with boot media beside the QEMU layer and the pytest plugin and MCP server on
top. Read from the source (every ``import``, also those inside functions), so a new
module or a shortcut import cannot quietly break the layering.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import pytest_minix

PACKAGE = Path(pytest_minix.__file__).resolve().parent

# Lower number = closer to QEMU. A module may import from a lower layer or from its own unit;
# units sharing a number are siblings and must not import each other.
LAYERS: dict[str, int] = {
    "errors": 0,  # the exceptions every layer raises
    "paths": 0,  # cache and shipped-data locations
    "profiles": 0,  # guest definitions (vm/*.toml)
    "version": 0,  # the harness version
    "qemu": 1,
    "media": 1,
    "guest": 2,
    "measure": 3,
    "verdicts": 4,
    "plugin": 5,
    "mcp": 5,
    "cli": 6,
    "suites": 6,  # the claims suites shipped in the wheel (tests/boot, ... force-included; the package imports nothing)
    "__init__": 6,  # the public API re-exports
}


def unit_of(module: str) -> str:
    """``pytest_minix.guest.vm`` -> ``guest``; ``pytest_minix.errors`` -> ``errors``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """Every pytest_minix module ``path`` imports, with the line: absolute, relative, lazy."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("pytest_minix"):
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            if not base.startswith("pytest_minix"):
                continue
            for alias in node.names:
                # `from pytest_minix.measure import syscalls` imports a module; `... import METRICS` a name.
                candidate = f"{base}.{alias.name}"
                is_module = (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py").is_file() or (
                    PACKAGE.parent / candidate.replace(".", "/") / "__init__.py"
                ).is_file()
                yield node.lineno, candidate if is_module else base


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def graph() -> dict[str, set[str]]:
    return {module_name(p): {target for _, target in imports(p)} - {module_name(p)} for p in sources()}


def test_every_module_belongs_to_a_layer() -> None:
    unknown = sorted({unit_of(module_name(p)) for p in sources()} - set(LAYERS))
    assert not unknown, f"add these to LAYERS (and to the README's architecture table): {unknown}"


def violations(me: str, found: list[tuple[int, str]]) -> list[str]:
    """The imports of a module of unit ``me`` that point up or sideways."""
    wrong = []
    for line, target in found:
        them = unit_of(target)
        if them == me or (LAYERS[me] == LAYERS[them] == 0):
            continue  # within a unit, and among the foundation modules (profiles reads paths, raises errors)
        if target == "pytest_minix":
            wrong.append(f"line {line}: imports the package root (import from the module that defines the name)")
        elif LAYERS[them] >= LAYERS[me]:
            wrong.append(f"line {line}: {me} (layer {LAYERS[me]}) imports {target} (layer {LAYERS[them]})")
    return wrong


@pytest.mark.parametrize("path", sources(), ids=lambda p: module_name(p))
def test_imports_point_down_the_layers(path: Path) -> None:
    wrong = violations(unit_of(module_name(path)), list(imports(path)))
    assert not wrong, f"{path.relative_to(PACKAGE.parent)}:\n" + "\n".join(wrong)


def test_no_import_cycles() -> None:
    """Not even through imports inside functions: a cycle hidden that way is still a cycle."""
    edges = graph()
    # Package __init__ modules that import their submodules to register them are edges too.
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in edges:
                continue
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_wrong_way_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule itself can fail: up, sideways and lazy imports in a module are all caught."""
    fake = PACKAGE / "qemu" / "_layering_probe.py"
    source = (
        "from pytest_minix.qemu.console import Console\n"  # same unit: fine
        "from pytest_minix.errors import VMError\n"  # foundation: fine
        "from ..guest import vm\n"  # up, relative
        "def f():\n"
        "    from pytest_minix.media.images import ImageStore\n"  # sideways, inside a function
        "    import pytest_minix.plugin.hooks\n"  # up, plain import
    )
    monkeypatch.setattr(
        Path, "read_text", lambda self, *a, **k: source if self == fake else Path.read_bytes(self).decode()
    )
    found = list(imports(fake))
    assert [t for _, t in found] == [
        "pytest_minix.qemu.console",
        "pytest_minix.errors",
        "pytest_minix.guest.vm",
        "pytest_minix.media.images",
        "pytest_minix.plugin.hooks",
    ]
    wrong = violations("qemu", found)
    assert [w.split(":")[0] for w in wrong] == ["line 3", "line 5", "line 6"], wrong


def test_shipped_data_folders_do_not_collide_with_modules() -> None:
    """``vm/``, ``claims/`` and the claims suites (``tests/boot`` ... as ``suites/boot`` ...) ship inside the
    wheel; no module or subpackage may take those names, and each comes from a folder of the checkout."""
    import tomllib

    pyproject = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    shipped = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    for source, dest in shipped.items():
        assert (PACKAGE.parent / source).is_dir(), f"force-include source {source}/ is missing"
        rel = Path(dest).relative_to("pytest_minix")
        target = PACKAGE / rel
        assert not target.with_suffix(".py").exists(), f"{dest} would collide with the module {target}.py"
        assert not (target / "__init__.py").exists(), f"{dest} would collide with the package {target}"


def test_no_module_imports_another_modules_private_names() -> None:
    """What one module uses of another is public: a ``_name`` imported across modules is a hidden dependency."""
    found = []
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pytest_minix"):
                found += [
                    f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    assert not found, "\n".join(found)

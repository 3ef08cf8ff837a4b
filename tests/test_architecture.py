"""The code's shape, kept by tests: floors that only point down, no private names used across modules, no module
over ~700 lines, ruff and mypy clean (shared/ARCHITECTURE.md has the floors; the README's layout section names them)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "kzlabel"
MAX_LINES = 700

# module (or package) → floor; the longest matching prefix decides. A module may import its own floor or lower.
FLOORS: dict[str, int] = {
    "kzlabel.errors": 0,
    "kzlabel._version": 0,
    "kzlabel.io": 1,
    "kzlabel.label": 1,
    "kzlabel.keys": 1,
    "kzlabel.registry": 1,
    "kzlabel.media_av": 1,
    "kzlabel.media_rate": 1,
    "kzlabel.watermark": 1,
    "kzlabel.fingerprint": 1,
    "kzlabel.picture": 1,
    "kzlabel.layers": 2,
    "kzlabel.rights": 2,
    "kzlabel.rights.vocab": 2,
    "kzlabel.report": 2,
    "kzlabel.containers": 3,
    "kzlabel.formats": 3,
    "kzlabel.recovery": 3,
    "kzlabel.pipeline": 4,
    "kzlabel.rights.actions": 5,
    "kzlabel.batch": 5,
    "kzlabel.dataset": 5,
    "kzlabel.chat": 5,
    "kzlabel.survival": 5,
    "kzlabel.cli": 6,
    "kzlabel.server": 6,
    "kzlabel.distributed": 6,
    "kzlabel": 6,  # the package root re-exports the public API from every floor
}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out.append((".".join(parts), path))
    return out


def _floor(module: str) -> int:
    best = max((name for name in FLOORS if module == name or module.startswith(name + ".")), key=len)
    return FLOORS[best]


def _imports(module: str, path: Path) -> list[tuple[str, list[str], int]]:
    """(imported kzlabel module, names imported from it, line) for every import in the file, local ones included."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "kzlabel"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "kzlabel":
                continue
            names = [a.name for a in node.names]
            # `from . import formats` imports a submodule, not a name of the package
            subs = [n for n in names if (SRC / Path(*target.split("."), n)).exists()
                    or (SRC / Path(*target.split("."), n + ".py")).exists()]
            found += [(f"{target}.{n}", [], node.lineno) for n in subs]
            rest = [n for n in names if n not in subs]
            if rest:
                found.append((target, rest, node.lineno))
    return found


MODULES = _modules()


def test_the_floor_table_covers_every_module() -> None:
    assert all(_floor(name) >= 0 for name, _ in MODULES)


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_imports_only_point_down(module: str, path: Path) -> None:
    own = _floor(module)
    up = [f"line {line}: {target} (floor {_floor(target)})" for target, _, line in _imports(module, path)
          if _floor(target) > own and not target.startswith(module + ".")]
    assert not up, f"{module} (floor {own}) imports upward: {up}"


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_no_private_names_from_other_modules(module: str, path: Path) -> None:
    private = [f"line {line}: {target}.{n}" for target, names, line in _imports(module, path) for n in names
               if n.startswith("_") and n != "__version__" and target != module]
    assert not private, f"{module} uses other modules' private names: {private}"


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_a_format_module_never_imports_another_format(module: str, path: Path) -> None:
    shared = {"kzlabel.formats", "kzlabel.formats.base"}  # the registry and the handler contract
    if not module.startswith("kzlabel.formats.") or module in shared:
        return
    family = ".".join(module.split(".")[:3])
    other = [f"line {line}: {target}" for target, _, line in _imports(module, path)
             if target.startswith("kzlabel.formats.") and target not in shared and not target.startswith(family)]
    assert not other, f"{module} imports another format's module: {other}"


def test_no_module_over_the_size_limit() -> None:
    big = {name: n for name, path in MODULES if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_ruff_clean() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is a test dependency (pip install -e '.[test]')"
    proc = subprocess.run([ruff, "check", "--no-cache", str(PACKAGE)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


@pytest.mark.slow
def test_mypy_clean() -> None:
    proc = subprocess.run([sys.executable, "-m", "mypy", str(PACKAGE)], capture_output=True, text=True, check=False,
                          cwd=SRC.parent)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]

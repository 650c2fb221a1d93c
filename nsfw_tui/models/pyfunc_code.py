"""The code folder an MLflow model carries: the project's modules its predict imports, no more."""

from __future__ import annotations

import ast
import importlib.util
import shutil
from pathlib import Path

PACKAGE = "nsfw_tui"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
MODEL_FILE = PACKAGE_DIR / "pyfunc" / "model.py"
"""The pyfunc (models from code); MLflow runs it when the model loads."""
STUB = '"""Carried with an MLflow model: only the modules its predict imports."""\n'


def _file_of(module: str) -> Path | None:
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    init = base / "__init__.py"
    return init if init.is_file() else None


def _name_of(file: Path) -> str:
    rel = file.relative_to(PACKAGE_DIR).with_suffix("")
    parts = [PACKAGE, *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


class _Imports(ast.NodeVisitor):
    """The project modules a file imports, anywhere but under ``if TYPE_CHECKING:``."""

    def __init__(self, module: str, is_package: bool) -> None:
        self.package = module if is_package else module.rpartition(".")[0]
        self.modules: set[str] = set()
        self.used_inits: set[str] = set()  # packages whose own names are imported

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
        if name == "TYPE_CHECKING":
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.modules.update(a.name for a in node.names if _file_of(a.name))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            base = importlib.util.resolve_name("." * node.level + base, self.package)
        if _file_of(base) is None:
            return
        self.modules.add(base)
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            if _file_of(sub) is not None:
                self.modules.add(sub)
            elif _file_of(base) == PACKAGE_DIR.joinpath(*base.split(".")[1:], "__init__.py"):
                self.used_inits.add(base)


def needed_modules(entry: Path = MODEL_FILE) -> tuple[dict[str, Path], set[str]]:
    """Every project module ``entry`` imports, transitively: name to file; and real inits."""
    found: dict[str, Path] = {}
    real_inits: set[str] = set()
    todo = [_name_of(entry)]
    while todo:
        name = todo.pop()
        file = _file_of(name)
        if name in found or file is None:
            continue
        found[name] = file
        visitor = _Imports(name, file.name == "__init__.py")
        visitor.visit(ast.parse(file.read_text(encoding="utf-8"), filename=str(file)))
        real_inits |= visitor.used_inits
        todo.extend(visitor.modules | visitor.used_inits)
    return found, real_inits


def stage_code(dest: Path, entry: Path = MODEL_FILE) -> Path:
    """``dest/nsfw_tui``: the modules ``entry`` needs, with empty package inits but where used.

    A package's own ``__init__`` imports its siblings (the REST face's imports its web app);
    an empty one keeps importing one module from pulling in the rest.
    """
    modules, real_inits = needed_modules(entry)
    root = dest / PACKAGE
    if root.exists():
        shutil.rmtree(root)
    for name, file in modules.items():
        target = root.joinpath(*file.relative_to(PACKAGE_DIR).parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        if file.name != "__init__.py" or name in real_inits:
            shutil.copyfile(file, target)
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        init = folder / "__init__.py"
        if not init.exists():
            init.write_text(STUB, encoding="utf-8")
    return root

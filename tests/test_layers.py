"""Imports point down the layers of docs/architecture.md, and no process imports another.

The check reads every module's imports (lazy ones inside functions included) with ``ast``, so
it needs nothing installed and sees what a reviewer would.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests import ROOT

LAYERS: dict[str, int] = {
    "schemas": 0,
    "revloop": 1,  # the core: settings, kafka, ids, crypto, files, stores
    "platforms": 2,
    "ingest": 3,
    "streams": 3,
    "sinks": 3,
    "connectors": 3,
    "emulators": 3,  # the platform APIs' stand-ins: tests and the demo use them
    "infra": 3,
    "demo": 4,
    "bench": 4,
    "console": 4,  # the ops console: the core's lag code beside the sink's Postgres views
    "revloop.cli": 5,  # only the command line imports everything
    "revloop.__main__": 5,
}
"""Module prefix → layer; the longest matching prefix decides."""
TOP = max(LAYERS.values())


def home(module: str) -> str | None:
    """The LAYERS entry a module belongs to."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in LAYERS:
            return prefix
    return None


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, module: str) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import in the file, relative ones resolved. For
    ``from package import name`` both the package and ``package.name`` (a submodule, maybe)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:
                yield node.lineno, f"{target}.{alias.name}"


def violations(root: Path) -> list[str]:
    """Every import that points up a layer, or across to another package of the same layer."""
    found = set()
    for top in sorted({name.split(".")[0] for name in LAYERS}):
        for path in sorted((root / top).rglob("*.py")):
            source = home(module_name(path, root))
            assert source is not None
            for line, imported in imports(path, module_name(path, root)):
                target = home(imported)
                if target is None or target == source:
                    continue
                if LAYERS[target] > LAYERS[source]:
                    how = "up"
                elif LAYERS[target] == LAYERS[source] < TOP:
                    how = "across"
                else:
                    continue
                found.add(
                    f"{path.relative_to(root)}:{line}: {source} (layer {LAYERS[source]}) "
                    f"imports {target} (layer {LAYERS[target]}): {how}"
                )
    return sorted(found)


def test_the_packages_import_only_downward() -> None:
    assert violations(ROOT) == []


def test_every_package_has_a_layer() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages <= set(LAYERS), packages - set(LAYERS)


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for top in {name.split(".")[0] for name in LAYERS}:
        (root / top).mkdir(exist_ok=True)
    return root


def test_an_upward_import_is_caught(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "revloop/__init__.py": "",
            "revloop/settings.py": "from schemas.topics import TOPICS\n",  # down: fine
            "revloop/kafka.py": "def f():\n    from ingest.app import create_app\n",  # up
            "schemas/__init__.py": "",
            "schemas/topics.py": "from revloop import settings\n",  # up
            "ingest/__init__.py": "",
            "ingest/app.py": "from .publisher import x\nfrom streams import normalizer\n",
            "revloop/cli/__init__.py": "import bench\nimport ingest.app\n",  # the top: fine
        },
    )
    assert violations(root) == [
        "ingest/app.py:2: ingest (layer 3) imports streams (layer 3): across",
        "revloop/kafka.py:2: revloop (layer 1) imports ingest (layer 3): up",
        "schemas/topics.py:1: schemas (layer 0) imports revloop (layer 1): up",
    ]


def test_the_core_may_not_import_the_command_line(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "revloop/__init__.py": "",
            "revloop/kafka.py": "from revloop.cli import app\n",
            "revloop/cli/__init__.py": "from revloop.kafka import x\n",
        },
    )
    assert violations(root) == [
        "revloop/kafka.py:1: revloop (layer 1) imports revloop.cli (layer 5): up",
    ]


def _one_edit_apart(a: str, b: str) -> bool:
    """Whether one letter added, removed or changed turns ``a`` into ``b``."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) == 1
    short, long = sorted((a, b), key=len)
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


def test_no_two_module_names_are_one_letter_apart() -> None:
    names = set()
    for top in [*{name.split(".")[0] for name in LAYERS}, "tests"]:
        for path in (ROOT / top).rglob("*.py"):
            names.add(path.parent.name if path.stem == "__init__" else path.stem)
    pairs = [
        (a, b) for a in sorted(names) for b in sorted(names) if a < b and _one_edit_apart(a, b)
    ]
    assert pairs == []


def test_names_one_letter_apart_are_found() -> None:
    assert _one_edit_apart("normalize", "normalizer")
    assert _one_edit_apart("stack", "stacks")
    assert _one_edit_apart("serde", "verde")
    assert not _one_edit_apart("process", "processor")
    assert not _one_edit_apart("shopify", "shopify")

"""The house's layering (DESIGN.md): pipelines < trainer < evaluation < assets, no import runs
upward, nothing below assets/ imports dagster, and no two modules import each other at run time
(imports under `if TYPE_CHECKING:` are type hints, not imports)."""

import ast
from pathlib import Path

import pytest

LAYERS = ("pipelines", "trainer", "evaluation", "assets")
ROOT = Path(__file__).resolve().parents[1]


def module_name(root: Path, file: Path) -> str:
    parts = file.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(tree: ast.Module) -> set[str]:
    """Every module named by an import statement, `from a import b` as both `a` and `a.b`,
    skipping `if TYPE_CHECKING:` blocks."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def import_graph(root: Path, layers: tuple[str, ...]) -> dict[str, set[str]]:
    """Module -> every name it imports (its own project's modules and third parties alike)."""
    files = [f for layer in layers for f in sorted((root / layer).rglob("*.py"))]
    return {module_name(root, f): runtime_imports(ast.parse(f.read_text(), str(f))) for f in files}


def violations(graph: dict[str, set[str]], layers: tuple[str, ...]) -> list[str]:
    rank = {layer: k for k, layer in enumerate(layers)}
    out = []
    for module, names in sorted(graph.items()):
        own = rank[module.split(".")[0]]
        for name in sorted(names):
            top = name.split(".")[0]
            if top == "dagster" and module.split(".")[0] != "assets":
                out.append(f"{module} imports dagster")
            elif top in rank and rank[top] > own:
                out.append(f"{module} imports {name} (upward)")
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    edges = {m: sorted(n for n in names if n in graph and n != m) for m, names in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                found.append(sorted([v, *component]))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return found


def test_the_house_has_no_upward_import_no_dagster_below_assets_and_no_circle():
    graph = import_graph(ROOT, LAYERS)
    assert len(graph) > 50
    assert violations(graph, LAYERS) == []
    assert cycles(graph) == []


@pytest.fixture
def toy_house(tmp_path: Path) -> Path:
    files = {
        "pipelines/__init__.py": "",
        "pipelines/a.py": "from pipelines.b import f\n",
        "pipelines/b.py": "def f():\n    from pipelines import a\n",
        "pipelines/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pipelines.d import T\n",
        "pipelines/d.py": "import pipelines.c\nimport trainer.x\n",
        "trainer/__init__.py": "",
        "trainer/x.py": "import dagster\n",
        "assets/__init__.py": "",
        "assets/y.py": "import dagster\nfrom trainer.x import g\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_the_checks_catch_a_circle_an_upward_import_and_dagster_below_assets(toy_house):
    graph = import_graph(toy_house, ("pipelines", "trainer", "assets"))
    assert violations(graph, ("pipelines", "trainer", "assets")) == ["pipelines.d imports trainer.x (upward)",
                                                                   "trainer.x imports dagster"]
    # a <-> b through a function-level import is a circle; c -> d only under TYPE_CHECKING is not
    assert cycles(graph) == [["pipelines.a", "pipelines.b"]]

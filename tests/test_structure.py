"""The shape of the code, read from the source without running it (ast): which of our modules import which.

* no import circle between our modules (lazy imports inside functions count: they still tie the two modules);
* the arrows point one way: ``competition`` -> ``evaluation`` -> ``nnunet_genesis`` (the core), never back;
* no module over LINE_LIMIT lines unless LONG_MODULES names it with the one idea it holds;
* the module map (docs/architecture.md) names every module (by path, or by its folder) and no path that does not exist;
* setup.py installs every package.

The checks' own tests (on small made-up sources) show that each one fails on the fault it looks for.
"""
import ast
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOTS = ("nnunet_genesis", "competition", "evaluation")
# Layers: a module may import from its own layer and the layers after it, never from one before it.
LAYERS = ("competition", "evaluation", "nnunet_genesis")
LINE_LIMIT = 400
LONG_MODULES = {   # path: the one idea that keeps it in one file (also in the module map, docs/architecture.md)
    "evaluation/evaluate.py": "scoring a folder of predictions against references",
    "competition/submission.py": "building and validating the Decathlon submission",
}


# ----------------------------------------------------------------------------------------------------------------
# reading the code
# ----------------------------------------------------------------------------------------------------------------

def module_files(repo=REPO, roots=ROOTS):
    """{dotted module name: path relative to repo} for every .py file under the roots."""
    found = {}
    for root in roots:
        for folder, dirs, files in os.walk(os.path.join(repo, root)):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__")))
            for name in sorted(files):
                if name.endswith(".py"):
                    rel = os.path.relpath(os.path.join(folder, name), repo)
                    dotted = rel[:-3].replace(os.sep, ".")
                    found[dotted[:-len(".__init__")] if dotted.endswith(".__init__") else dotted] = rel
    return found


def imported_names(source, module, is_package=False):
    """Every module name an import statement in ``source`` may load, at any depth (function bodies too).

    ``from a.b import c`` yields ``a.b`` and ``a.b.c`` (c may be a submodule); relative imports are resolved
    against ``module``.
    """
    names = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[:len(parts) - node.level + 1])
                base = anchor + ("." + base if base else "")
            names.add(base)
            names.update(base + "." + alias.name for alias in node.names)
    return names


def import_graph(modules, read=lambda rel: open(os.path.join(REPO, rel)).read()):
    """{module: set of our modules it imports} (only modules in ``modules``; a module never points at itself)."""
    graph = {}
    for module, rel in modules.items():
        is_package = rel.endswith("__init__.py")
        graph[module] = {n for n in imported_names(read(rel), module, is_package) if n in modules and n != module}
    return graph


def find_cycles(graph):
    """The strongly connected components with more than one module (Tarjan), each sorted: the import circles."""
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def backward_imports(graph, layers=LAYERS):
    """(importer, imported) pairs that point against the layer order, e.g. evaluation -> competition."""
    rank = {layer: i for i, layer in enumerate(layers)}
    return sorted((a, b) for a, targets in graph.items() for b in targets
                  if rank[b.split(".")[0]] < rank[a.split(".")[0]])


def long_modules(modules, limit=LINE_LIMIT, allowed=(), read=lambda rel: open(os.path.join(REPO, rel)).read()):
    """{path: lines} of modules over ``limit`` lines that ``allowed`` does not name."""
    lengths = {rel: len(read(rel).splitlines()) for rel in modules.values()}
    return {rel: n for rel, n in sorted(lengths.items()) if n > limit and rel not in allowed}


def readme_module_map(readme_text):
    """The backticked paths of the module table (the rows of '## How the parts fit' in docs/architecture.md)."""
    section = readme_text.split("## How the parts fit", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [re.match(r"\| `([^`]+)`", row).group(1) for row in rows]


def unmapped(modules, mapped_paths):
    """Module files (package ``__init__.py`` files aside) the map names neither by path nor by a folder above them."""
    folders = [p for p in mapped_paths if p.endswith("/")]
    paths = [rel.replace(os.sep, "/") for rel in modules.values() if not rel.endswith("__init__.py")]
    return sorted(p for p in paths if p not in mapped_paths and not any(p.startswith(f) for f in folders))


def setup_packages(setup_text):
    """The ``packages=[...]`` list of setup.py."""
    for node in ast.walk(ast.parse(setup_text)):
        if isinstance(node, ast.keyword) and node.arg == "packages":
            return [ast.literal_eval(element) for element in node.value.elts]
    raise AssertionError("setup.py has no packages=[...]")


# ----------------------------------------------------------------------------------------------------------------
# the checks on this repository
# ----------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def modules():
    found = module_files()
    assert "nnunet_genesis.transfer.weights" in found and "competition.pipeline" in found and "evaluation.metrics" in found
    return found


@pytest.fixture(scope="module")
def graph(modules):
    return import_graph(modules)


def test_the_graph_sees_known_imports(graph):
    """The reader finds imports we know are there (a top-level one and one inside a function)."""
    assert "nnunet_genesis.transfer.rules" in graph["nnunet_genesis.transfer.weights"]
    assert "nnunet_genesis.nnunet_v1.trainers" in graph["nnunet_genesis.integration"]   # inside find_genesis_trainer
    assert "evaluation.tasks" in graph["competition.submission"]


def test_no_import_circle_between_our_modules(graph):
    assert find_cycles(graph) == []


def test_imports_point_from_competition_to_evaluation_to_the_core(graph):
    assert backward_imports(graph) == []


def test_no_module_over_the_line_limit_unless_it_holds_one_idea(modules):
    assert long_modules(modules, allowed=LONG_MODULES) == {}


def test_module_map_matches_the_code(modules):
    with open(os.path.join(REPO, "docs", "architecture.md")) as f:
        readme = f.read()
    mapped = readme_module_map(readme)
    assert unmapped(modules, mapped) == []
    assert [p for p in mapped if not os.path.exists(os.path.join(REPO, p))] == []
    for path, idea in LONG_MODULES.items():   # the long modules say their one idea in the map too
        row = next(line for line in readme.splitlines() if line.startswith("| `%s`" % path))
        assert "one idea" in row, row


def test_setup_installs_every_package(modules):
    with open(os.path.join(REPO, "setup.py")) as f:
        packages = setup_packages(f.read())
    ours = sorted(m for m, rel in modules.items() if rel.endswith("__init__.py"))
    assert sorted(p for p in packages if p.split(".")[0] in ROOTS) == ours


# ----------------------------------------------------------------------------------------------------------------
# the checks fail on the faults they look for
# ----------------------------------------------------------------------------------------------------------------

FAKE = {
    "core.a": "import os\nfrom core import b\n",
    "core.b": "def f():\n    from core.c import g\n",          # lazy import: still an edge
    "core.c": "from . import a\n",                             # relative import closing the circle a -> b -> c -> a
    "core.d": "from core.a import x\n",
    "evaluation.e": "import competition.p\n",                  # against the layer order
    "competition.p": "from evaluation import e\n",
}


def fake_graph():
    modules = {name: name.replace(".", "/") + ".py" for name in FAKE}
    by_path = {rel: FAKE[name] for name, rel in modules.items()}
    return import_graph(modules, read=by_path.__getitem__)


def test_checks_find_a_circle_through_a_lazy_and_a_relative_import():
    graph = fake_graph()
    assert graph["core.b"] == {"core.c"} and graph["core.c"] == {"core.a"}
    assert find_cycles(graph) == [["competition.p", "evaluation.e"], ["core.a", "core.b", "core.c"]]


def test_checks_find_an_import_against_the_layers():
    assert backward_imports(fake_graph(), layers=("competition", "evaluation", "core")) == \
        [("evaluation.e", "competition.p")]


def test_checks_find_a_long_module_and_a_module_missing_from_the_map():
    modules = {"core.a": "core/a.py", "core.b": "core/b.py", "core.sub": "core/sub/__init__.py",
               "core.sub.x": "core/sub/x.py"}
    texts = {"core/a.py": "x = 1\n" * 401, "core/b.py": "x = 1\n", "core/sub/__init__.py": "", "core/sub/x.py": ""}
    assert long_modules(modules, read=texts.__getitem__) == {"core/a.py": 401}
    assert long_modules(modules, allowed={"core/a.py": "one idea"}, read=texts.__getitem__) == {}
    readme = "## How the parts fit\n\n| module | what |\n|---|---|\n| `core/a.py` | a |\n| `core/sub/` | sub |\n\n## Next\n"
    assert readme_module_map(readme) == ["core/a.py", "core/sub/"]
    assert unmapped(modules, readme_module_map(readme)) == ["core/b.py"]
    assert setup_packages("setup(name='x', packages=['core', 'core.sub'])") == ["core", "core.sub"]

"""The shape of the code, read from the source without running it (ast): which of our modules import which.

* no import circle between our modules (lazy imports inside functions count: they still tie the two modules);
* the arrows point one way: ``competition`` -> ``evaluation`` -> ``nnunet_genesis`` (the core), never back;
* ``evaluation`` stands alone: what it imports of ``nnunet_genesis``, at any depth, is only the small shared helpers
  (EVALUATION_HELPERS: file writes, integrity, the raw folder's and nnU-Net's names, the command wrapper), never a
  trainer, and none of it imports nnU-Net;
* the core (CORE_PACKAGES) imports neither nnU-Net (``nnunet``, ``nnunetv2``) nor our adapters (``nnunet_v1``,
  ``nnunet_v2``), at any depth, except the commands that build nnU-Net's networks (NNUNET_COMMANDS, each with why);
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
# What evaluation/ may import of nnunet_genesis, at any depth (parent packages included: Python runs them too).
EVALUATION_HELPERS = {
    "nnunet_genesis", "nnunet_genesis.io", "nnunet_genesis.commands", "nnunet_genesis.nnunet_v1",
    "nnunet_genesis.nnunet_v2",                  # packages: empty __init__ files
    "nnunet_genesis.io.atomic",                  # atomic writes, output inside input
    "nnunet_genesis.io.integrity",               # is a file complete
    "nnunet_genesis.io.safe_pickle",             # the wrapper's error type (a pickle that is not plain data)
    "nnunet_genesis.io.raw_dataset",             # imagesTr, labelsTr, dataset.json
    "nnunet_genesis.commands.wrapper",           # the command wrapper: one line, exit status
    "nnunet_genesis.nnunet_v1.names",            # v1's names without a lookup (validation_raw, TaskNNN_Name)
    "nnunet_genesis.nnunet_v2.names",            # v2's names without a lookup (validation, DatasetNNN_Name)
}
NNUNET = ("nnunet", "nnunetv2")
ADAPTERS = ("nnunet_genesis.nnunet_v1", "nnunet_genesis.nnunet_v2")
CORE_PACKAGES = tuple("nnunet_genesis." + p for p in
                      ("distortions", "pretraining", "transfer", "checkpoints", "io", "commands"))
NNUNET_COMMANDS = {   # the core modules allowed to import nnU-Net and the adapters: why
    "nnunet_genesis.commands.cli": "the entry points: --nnunet 1/2 picks an adapter's prepare and layout",
    "nnunet_genesis.commands.score_checkpoint": "scores a checkpoint on a prepared task: builds v1's/v2's network",
    "nnunet_genesis.commands.transfer_dry_run": "the transfer's dry run: builds the network v1/v2 would train",
}
LINE_LIMIT = 400
LONG_MODULES = {}   # path: the one idea that keeps it in one file (also in the module map, docs/architecture.md)


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


def with_parent_packages(names, modules):
    """``names`` and every package above each of them that is one of ``modules`` (importing a.b.c runs a and a.b)."""
    found = set(names)
    for name in names:
        parts = name.split(".")
        found.update(".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in modules)
    return found


def reachable(graph, starts):
    """Every module that importing ``starts`` may load, at any depth (lazy imports and parent packages too)."""
    seen, todo = set(), list(starts)
    while todo:
        for name in with_parent_packages(graph.get(todo.pop(), ()), graph):
            if name not in seen:
                seen.add(name)
                todo.append(name)
    return seen - set(starts)


def outside_helpers(graph, starts, allowed, within="nnunet_genesis"):
    """The modules under ``within`` that ``starts`` reach (:func:`reachable`) and ``allowed`` does not name."""
    return sorted(m for m in reachable(graph, starts) if m.split(".")[0] == within and m not in allowed)


def forbidden_imports(modules, selected, forbidden, read=lambda rel: open(os.path.join(REPO, rel)).read()):
    """{module: [names]} of the ``selected`` modules whose imports (function bodies too) name a package of
    ``forbidden`` or a module inside one."""
    found = {}
    for module in sorted(selected):
        rel = modules[module]
        names = imported_names(read(rel), module, rel.endswith("__init__.py"))
        bad = sorted(n for n in names if any(n == f or n.startswith(f + ".") for f in forbidden))
        if bad:
            found[module] = bad
    return found


def in_packages(modules, packages):
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in packages)]


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
    assert "evaluation.tasks" in graph["competition.submission_checks"]


def test_no_import_circle_between_our_modules(graph):
    assert find_cycles(graph) == []


def test_imports_point_from_competition_to_evaluation_to_the_core(graph):
    assert backward_imports(graph) == []


def test_evaluation_imports_only_the_small_shared_helpers(graph):
    """evaluation/ stands alone: nothing of the core beyond the helpers, no trainer, no adapter's layout."""
    evaluation = in_packages(graph, ("evaluation",))
    reached = reachable(graph, evaluation)
    assert outside_helpers(graph, evaluation, EVALUATION_HELPERS) == []
    assert [m for m in reached if "trainers" in m.split(".")] == []
    assert "nnunet_genesis.io.raw_dataset" in reached and "nnunet_genesis.commands.wrapper" in reached


def test_evaluation_and_its_helpers_import_no_nnunet(modules):
    assert forbidden_imports(modules, in_packages(modules, ("evaluation",)) + sorted(EVALUATION_HELPERS),
                             NNUNET + ("nnunet_genesis.nnunet_v1.layout", "nnunet_genesis.nnunet_v2.layout")) == {}


def test_the_core_imports_no_nnunet_and_no_adapter(modules):
    core = in_packages(modules, CORE_PACKAGES)
    assert "nnunet_genesis.transfer.weights" in core and "nnunet_genesis.commands.wrapper" in core
    assert set(NNUNET_COMMANDS) <= set(core)   # the exceptions name modules that exist
    assert forbidden_imports(modules, set(core) - set(NNUNET_COMMANDS), NNUNET + ADAPTERS) == {}


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


STANDALONE = {   # evaluation reaches a trainer through a helper's lazy import; the trainer imports nnunet
    "core": "", "core.io": "", "core.trainers": "",
    "core.io.h": "import os\ndef f():\n    from core.trainers import t\n",
    "core.io.ok": "x = 1\n",
    "core.trainers.t": "import torch\nfrom nnunet.training import x\n",
    "core.wrapper": "def f():\n    import nnunetv2.paths\n",
    "evaluation.e": "from core.io import h, ok\nimport core.wrapper\n",
}


def test_checks_find_evaluation_reaching_beyond_its_helpers_and_nnunet_imports():
    modules = {name: name.replace(".", "/") + ("/__init__.py" if name in ("core", "core.io", "core.trainers")
                                               else ".py") for name in STANDALONE}
    by_path = {rel: STANDALONE[name] for name, rel in modules.items()}
    graph = import_graph(modules, read=by_path.__getitem__)
    assert reachable(graph, ["evaluation.e"]) == {"core", "core.io", "core.io.h", "core.io.ok", "core.trainers",
                                                   "core.trainers.t", "core.wrapper"}
    helpers = {"core", "core.io", "core.io.h", "core.io.ok", "core.wrapper"}
    assert outside_helpers(graph, ["evaluation.e"], helpers, within="core") == ["core.trainers", "core.trainers.t"]
    assert outside_helpers(graph, ["evaluation.e"], helpers | {"core.trainers", "core.trainers.t"}, within="core") == []
    assert forbidden_imports(modules, modules, NNUNET + ("core.trainers",), read=by_path.__getitem__) == {
        "core.io.h": ["core.trainers", "core.trainers.t"], "core.trainers.t": ["nnunet.training", "nnunet.training.x"],
        "core.wrapper": ["nnunetv2.paths"]}
    assert in_packages(modules, ("core.io",)) == ["core.io", "core.io.h", "core.io.ok"]


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

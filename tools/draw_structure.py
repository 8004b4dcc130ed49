"""Draw the package's modules by floor: a module stands one floor above the highest module it imports.

    python tools/draw_structure.py -o docs/structure.png [--title "..."]

Modules are boxes (coloured by top-level package), imports are arrows; floor 1 holds modules that import none
of ours. A tall, narrow drawing is a tower (a long chain of imports); a few wide floors mean the layers are
independent. The import graph is the one ``tests/test_structure.py`` checks (read from the source with ``ast``,
lazy imports inside functions included), so the drawing and the test agree. Prints the floors in words too.
"""
import argparse
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tests.test_structure import find_cycles, import_graph, module_files  # noqa: E402  (the one import reader)

COLOURS = {"nnunet_genesis": "#cfe3f7", "evaluation": "#d9f0d3", "competition": "#fbe3c8"}


def floors(graph):
    """{module: floor}: 1 for modules importing none of ours, else 1 + the highest floor they import.
    Needs an acyclic graph (the structure test guarantees it)."""
    if find_cycles(graph):
        raise SystemExit("draw_structure: the imports form a circle: %s" % find_cycles(graph))
    level = {}

    def floor_of(module):
        if module not in level:
            level[module] = 1 + max((floor_of(m) for m in graph[module]), default=0)
        return level[module]

    for module in graph:
        floor_of(module)
    return level


def draw(graph, level, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    by_floor = {}
    for module, f in sorted(level.items(), key=lambda kv: (kv[1], kv[0])):
        by_floor.setdefault(f, []).append(module)
    width = max(len(v) for v in by_floor.values())
    fig, ax = plt.subplots(figsize=(max(8, 1.9 * width), 1.1 * len(by_floor) + 1.2))
    position = {}
    for f, modules in by_floor.items():
        for i, module in enumerate(modules):
            position[module] = ((i + 0.5) * width / len(modules), f)
    for a, targets in graph.items():
        for b in targets:
            (x0, y0), (x1, y1) = position[a], position[b]
            ax.annotate("", xy=(x1, y1 + 0.18), xytext=(x0, y0 - 0.18),
                        arrowprops=dict(arrowstyle="->", color="#888888", lw=0.5, alpha=0.6))
    for module, (x, y) in position.items():
        label = module.split(".", 1)[1] if "." in module else module + "/"
        ax.text(x, y, label.replace(".", ".\n", 1) if len(label) > 22 else label, ha="center", va="center",
                fontsize=6.5, bbox=dict(boxstyle="round,pad=0.3", fc=COLOURS.get(module.split(".")[0], "#eeeeee"),
                                        ec="#555555", lw=0.6))
    for f in by_floor:
        ax.text(-0.3, f, "floor %d" % f, ha="right", va="center", fontsize=8, color="#444444")
    handles = [plt.Rectangle((0, 0), 1, 1, fc=c, ec="#555555") for c in COLOURS.values()]
    ax.legend(handles, list(COLOURS), loc="upper right", fontsize=7, frameon=False, bbox_to_anchor=(1, 1.08), ncol=3)
    ax.set_xlim(-1.4, width + 0.2)
    ax.set_ylim(0.4, len(by_floor) + 0.6)
    ax.axis("off")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    from nnunet_genesis.io.atomic import save_figure_atomic
    save_figure_atomic(fig, path, dpi=72)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", required=True, help="the PNG to write")
    parser.add_argument("--title", default="modules by floor (an arrow: imports)")
    args = parser.parse_args(argv)
    graph = import_graph(module_files())
    level = floors(graph)
    for f in sorted(set(level.values()), reverse=True):
        print("floor %2d: %s" % (f, ", ".join(sorted(m for m, v in level.items() if v == f))))
    draw(graph, level, args.output, args.title)
    print("%d modules on %d floors -> %s" % (len(level), max(level.values()), args.output))


if __name__ == "__main__":
    main()

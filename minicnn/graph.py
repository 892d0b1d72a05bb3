"""mc.draw_graph: the autograd graph that produced a tensor, as DOT text and as a picture.

    loss = F.cross_entropy(model(x), labels)
    mc.record_gradient_norms(loss)            # optional: op nodes remember |gradient|
    loss.backward()
    mc.draw_graph(loss, "graph.png", model=model)

Data flows down the picture: parameters (ellipses, named as in the model's
state_dict) and ops (boxes: the Function's name and its output's shape) feed the
ops below them, down to the tensor drawn. backward() walks the arrows upwards.
After backward, each parameter shows the norm of its gradient, and each op the
norm of the gradient it received when record_gradient_norms was called first.

DOT text is always returned; a path ending in .dot gets it; .png, .svg or .pdf are
rendered by Graphviz's ``dot`` program when it is installed, and drawn with
matplotlib when it is not, so a plain ``pip install`` can draw too.
"""

import shutil
import subprocess
from pathlib import Path

import numpy as np

from .autograd import AccumulateGrad, Function, topological_order
from .device import to_numpy
from .files import atomic_write, save_figure


def record_gradient_norms(tensor):
    """Before backward(): make every op node of ``tensor``'s graph remember the norm of the
    gradient it receives (``node.grad_norm``), for draw_graph. Costs one reduction per node."""
    if tensor.grad_fn is None:
        return
    for node in topological_order(tensor.grad_fn):
        if isinstance(node, Function):
            node._hooks[("grad_norm", id(node))] = _norm_recorder(node)


def _norm_recorder(node):
    def hook(grad):
        node.grad_norm = float(np.linalg.norm(to_numpy(grad)))
    return hook


def _shape_text(shape):
    return "(" + ", ".join(str(s) for s in shape) + ")"


class _Drawing:
    """The graph as boxes and arrows: nodes {key: (label, kind)} and edges [(from, to)], data flowing from->to."""

    def __init__(self, tensor, model=None, depth=None):
        if tensor.grad_fn is None:
            raise ValueError("draw_graph: the tensor was not computed by ops that record a graph "
                             "(it is a leaf, or was computed under no_grad or from tensors that need no gradient)")
        if depth is not None and (not isinstance(depth, int) or depth < 1):
            raise ValueError(f"draw_graph: depth must be a positive int or None, got {depth!r}")
        module_names = {} if model is None else {id(m): name for name, m in model.named_modules() if name}
        parameter_names = {} if model is None else {id(p): name for name, p in model.named_parameters()}
        self.nodes, self.edges = {}, []
        order = topological_order(tensor.grad_fn)[::-1]          # forward order: inputs first
        key_of = {}
        for node in order:
            key_of[node] = self._add(node, module_names, parameter_names, depth)
        for node in order:
            for child in node.next_functions:
                if child is not None and key_of[child] != key_of[node]:
                    edge = (key_of[child], key_of[node])
                    if edge not in self.edges:
                        self.edges.append(edge)

    def _add(self, node, module_names, parameter_names, depth):
        if isinstance(node, AccumulateGrad):
            leaf = node.variable
            name = parameter_names.get(id(leaf))
            group = _truncate(name.rsplit(".", 1)[0], depth) if (name and depth and "." in name) else None
            if group is None:
                lines = [name or "leaf", _shape_text(leaf.shape)]
                if leaf.grad is not None:
                    lines.append(f"|grad| {np.linalg.norm(to_numpy(leaf.grad)):.3g}")
                key = f"leaf{id(node)}"
                self.nodes[key] = ("\n".join(lines), "leaf")
                return key
        else:
            module_name = module_names.get(id(node.module)) if node.module is not None else None
            group = _truncate(module_name, depth) if (module_name and depth) else None
            if group is None:
                lines = [node.name, _shape_text(node.output_shape)]
                if getattr(node, "grad_norm", None) is not None:
                    lines.append(f"|grad| {node.grad_norm:.3g}")
                key = f"op{id(node)}"
                self.nodes[key] = ("\n".join(lines), "op")
                return key
        # a collapsed module: one box for all the ops and parameters made inside it
        key = f"group:{group}"
        label, _ = self.nodes.get(key, (f"{group}\n", "group"))
        if isinstance(node, Function):                        # the last op decides the shape shown
            label = f"{group}\n{_shape_text(node.output_shape)}"
        self.nodes[key] = (label, "group")
        return key

    def dot(self):
        styles = {"op": 'shape=box, style="rounded,filled", fillcolor="#e8eef7"',
                  "leaf": 'shape=ellipse, style=filled, fillcolor="#fdf2d0"',
                  "group": 'shape=box3d, style=filled, fillcolor="#dfeedd"'}
        keys = {key: f"n{i}" for i, key in enumerate(self.nodes)}
        lines = ["digraph minicnn {", '  rankdir=TB; node [fontname="monospace", fontsize=10];']
        for key, (label, kind) in self.nodes.items():
            text = label.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
            lines.append(f'  {keys[key]} [label="{text}", {styles[kind]}];')
        for a, b in self.edges:
            lines.append(f"  {keys[a]} -> {keys[b]};")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def layers(self):
        """Each node's row: one more than the deepest of its inputs (sources in row 0)."""
        waiting = {key: 0 for key in self.nodes}               # inputs not yet placed
        users = {key: [] for key in self.nodes}
        for a, b in self.edges:
            waiting[b] += 1
            users[a].append(b)
        row = {key: 0 for key in self.nodes}
        ready = [key for key, n in waiting.items() if n == 0]
        while ready:                                           # Kahn's algorithm: a node once all inputs are placed
            key = ready.pop()
            for user in users[key]:
                row[user] = max(row[user], row[key] + 1)
                waiting[user] -= 1
                if waiting[user] == 0:
                    ready.append(user)
        for key in self.nodes:                                 # a parameter sits just above its first user
            if users[key] and not any(b == key for _, b in self.edges):
                row[key] = min(row[user] for user in users[key]) - 1
        return row

    def draw_matplotlib(self, path):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import FancyBboxPatch

        row = self.layers()
        top = min(row.values())
        rows = max(row.values()) - top + 1
        per_row = {}
        for key in self.nodes:
            per_row.setdefault(row[key], []).append(key)
        slot = 2.6                                              # the width of one box and its gap
        width = slot * max(len(v) for v in per_row.values())
        position = {}
        for r, keys in per_row.items():
            # the ops in the middle, the parameters to either side
            ops = [k for k in keys if self.nodes[k][1] != "leaf"]
            leaves = [k for k in keys if self.nodes[k][1] == "leaf"]
            keys = leaves[:len(leaves) // 2] + ops + leaves[len(leaves) // 2:]
            for i, key in enumerate(keys):
                position[key] = (width / 2 + (i - (len(keys) - 1) / 2) * slot, rows - (r - top))
        fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * width), max(3.0, 0.95 * rows)))
        colours = {"op": "#e8eef7", "leaf": "#fdf2d0", "group": "#dfeedd"}
        for a, b in self.edges:                                 # from the bottom of a box to the top of the next
            (xa, ya), (xb, yb) = position[a], position[b]
            ax.annotate("", xy=(xb, yb + 0.33), xytext=(xa, ya - 0.33),
                        arrowprops=dict(arrowstyle="->", color="#555555", shrinkA=0, shrinkB=0))
        for key, (label, kind) in self.nodes.items():
            x, y = position[key]
            ax.add_patch(FancyBboxPatch((x - 1.1, y - 0.33), 2.2, 0.66, boxstyle="round,pad=0.02",
                                        facecolor=colours[kind], edgecolor="#333333"))
            ax.text(x, y, label, ha="center", va="center", fontsize=7, family="monospace")
        ax.set_xlim(-0.2, width + 0.2)
        ax.set_ylim(0.3, rows + 0.7)
        ax.axis("off")
        fig.tight_layout()
        save_figure(fig, path, dpi=110)
        plt.close(fig)


def _truncate(name, depth):
    return ".".join(name.split(".")[:depth])


def draw_graph(tensor, path=None, model=None, depth=None):
    """Draw the autograd graph that produced ``tensor``; return its DOT text.

    model: names the parameters (``conv1.weight``) and the layers. depth: collapse the
    ops and parameters of each module at that depth of ``model`` into one box (depth=1
    gives one box per child of a Sequential, e.g. per block of a ResNet). path: where to
    write it (.dot, or a picture: .png, .svg, .pdf). Returns the DOT text.
    """
    drawing = _Drawing(tensor, model=model, depth=depth)
    text = drawing.dot()
    if path is None:
        return text
    path = Path(path)
    kind = path.suffix.lower().lstrip(".")
    if kind == "dot":
        with atomic_write(path, "w") as f:
            f.write(text)
    elif kind in ("png", "svg", "pdf"):
        dot_program = shutil.which("dot")
        if dot_program:
            with atomic_write(path) as f:
                subprocess.run([dot_program, f"-T{kind}"], input=text.encode(), stdout=f, check=True)
        else:
            drawing.draw_matplotlib(path)
    else:
        raise ValueError(f"draw_graph: path must end in .dot, .png, .svg or .pdf, got {path.name!r}")
    return text

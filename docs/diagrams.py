"""Computation-graph diagrams of one step of the gated RNN and of AttentionRNN(2), drawn with
matplotlib (no system packages needed). ``python docs/diagrams.py docs`` writes both PNGs
(docs/gated_rnn.png, docs/attention_rnn2.png), which the notebooks show.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

__all__ = ["draw_gated_rnn", "draw_attention_rnn2", "write_all"]


def _draw(nodes, edges, title, size):
    """``nodes``: ``{name: (x, y, label, kind)}``; ``edges``: ``(src, dst, label)``."""
    import matplotlib.pyplot as plt

    colors = {"input": "#dbe9f6", "state": "#fde2c8", "op": "#eeeeee", "out": "#d7f0d2"}
    fig, ax = plt.subplots(figsize=size)
    def clearance(name, dx, dy):
        # Points from a box's centre to its border along (dx, dy): the box is ~2.9 pt per
        # label character (fontsize 10) plus padding wide, ~24 pt high.
        half_width, half_height = 2.9 * len(nodes[name][2]) + 8, 12
        length = math.hypot(dx, dy) or 1.0
        return min(half_width * length / max(abs(dx), 1e-9),
                   half_height * length / max(abs(dy), 1e-9))

    xs = [n[0] for n in nodes.values()]
    ys = [n[1] for n in nodes.values()]
    ax.set_xlim(min(xs) - 0.8, max(xs) + 0.8)
    ax.set_ylim(min(ys) - 0.6, max(ys) + 0.6)
    for src, dst, label in edges:
        (x0, y0), (x1, y1) = nodes[src][:2], nodes[dst][:2]
        (dx, dy) = ax.transData.transform((x1, y1)) - ax.transData.transform((x0, y0))
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="-|>", color="#555555", lw=1.1,
                                    shrinkA=clearance(src, dx, dy),
                                    shrinkB=clearance(dst, dx, dy) + 2))
        if label:
            ax.text((x0 + x1) / 2, (y0 + y1) / 2, label, fontsize=8, color="#1f4e79",
                    ha="center", va="center", bbox=dict(fc="white", ec="none", pad=0.5))
    for x, y, label, kind in nodes.values():
        ax.text(x, y, label, ha="center", va="center", fontsize=10,
                bbox=dict(boxstyle="round,pad=0.45", fc=colors[kind], ec="#444444"))
    ax.set_title(title, fontsize=11)
    ax.axis("off")
    fig.tight_layout()
    return fig


def draw_gated_rnn():
    """One step: ``c = σ(W_c x + W_h h[t-1])``, ``h[t] = c ⊙ h[t-1] + (1 - c) ⊙ W_x x``."""
    nodes = {
        "x": (0, 0, "x[t] ∈ Rⁿ", "input"),
        "h0": (0, 2.4, "h[t-1] ∈ Rᵐ", "state"),
        "pre": (2.2, 1.2, "W_c x[t] + W_h h[t-1]", "op"),
        "c": (4.2, 1.2, "c[t] = σ(·) ∈ Rᵐ", "op"),
        "wx": (2.2, -0.6, "W_x x[t]", "op"),
        "keep": (6.2, 2.4, "c ⊙ h[t-1]", "op"),
        "write": (6.2, -0.6, "(1 - c) ⊙ W_x x[t]", "op"),
        "h": (8.2, 0.9, "h[t] = sum", "out"),
    }
    edges = [("x", "pre", "W_c"), ("h0", "pre", "W_h"), ("pre", "c", ""),
             ("x", "wx", "W_x"), ("c", "keep", "c"), ("h0", "keep", ""),
             ("c", "write", "1 - c"), ("wx", "write", ""), ("keep", "h", ""),
             ("write", "h", "")]
    return _draw(nodes, edges, "Gated RNN, one step", (10, 4.2))


def draw_attention_rnn2():
    """One step of AttentionRNN(2): lag 0 reads ``x[t]``, lags 1 and 2 read ``h[t-1]``, ``h[t-2]``."""
    nodes = {"a": (6.4, 2.6, "a[t] = softargmax(w₀, w₁, w₂) ∈ R³", "op"),
             "h": (9.6, 1.2, "h[t] = Σᵢ aᵢ[t] vᵢ", "out")}
    edges = [("a", "h", "weights")]
    # The code's names: Q_x for lag 0, Q_h[i-1] for lag i (AttentionRNNParams).
    sources = [("x", "x[t]", "input", "Q_x, K_x, V_x"),
               ("h1", "h[t-1]", "state", "Q_h[0], K_h[0], V_h[0]"),
               ("h2", "h[t-2]", "state", "Q_h[1], K_h[1], V_h[1]")]
    for i, (name, label, kind, mats) in enumerate(sources):
        y = 3.2 - 1.6 * i
        nodes[name] = (0, y, label, kind)
        nodes[f"qkv{i}"] = (2.4, y, f"q{i}, k{i}, v{i}", "op")
        nodes[f"w{i}"] = (4.0, y + 0.35, f"w{i} = q{i}ᵀk{i}", "op")
        edges += [(name, f"qkv{i}", mats), (f"qkv{i}", f"w{i}", ""), (f"w{i}", "a", ""),
                  (f"qkv{i}", "h", f"v{i}")]
    return _draw(nodes, edges, "AttentionRNN(2), one step", (11, 4.6))


def write_all(directory):
    """Writes ``gated_rnn.png`` and ``attention_rnn2.png`` into ``directory``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, draw in (("gated_rnn.png", draw_gated_rnn),
                       ("attention_rnn2.png", draw_attention_rnn2)):
        fig = draw()
        fig.savefig(directory / name, dpi=110)
        plt.close(fig)
        paths.append(directory / name)
    return paths


if __name__ == "__main__":
    for path in write_all(sys.argv[1] if len(sys.argv) > 1 else "docs"):
        print(path)

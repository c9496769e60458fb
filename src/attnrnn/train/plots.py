"""Loss and accuracy curves with matplotlib (the Agg backend when saving from the CLI)."""

from __future__ import annotations

__all__ = ["plot_curves", "plot_confusion"]


def _pyplot(path):
    """pyplot, on the Agg backend when the figure goes to a file."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _finish(fig, path, title):
    if title:
        fig.suptitle(title)
    if path is not None:
        fig.savefig(path, dpi=110)
        _pyplot(path).close(fig)
    return fig


def plot_curves(runs, path=None, title=None):
    """Loss and accuracy against sequences seen, one line pair per run; every update that
    was skipped for a non-finite gradient is marked (a red tick on the loss panel's top edge)
    and counted in the legend.

    Args:
      runs: ``{label: history}``, a history being the list of records
        [`attnrnn.train.loop.fit`][attnrnn.train.loop.fit] returns (per-step training figures,
        held-out or test figures where measured).
      path: save the figure there (PNG) when given.
      title: a figure title.

    Returns:
      The matplotlib figure.
    """
    plt = _pyplot(path)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for label, history in runs.items():
        train = [r for r in history if "loss" in r]
        # The evaluations: a held-out set, or a test split.
        prefix = next((p for p in ("heldout", "test") if any(f"{p}_loss" in r for r in history)),
                      "heldout")
        held = [r for r in history if f"{prefix}_loss" in r]
        seen = [r["sequences_seen"] for r in train]
        line, = ax_loss.plot(seen, [r["loss"] for r in train], lw=0.8, alpha=0.6,
                             label=f"{label} (train batch)")
        name = "held-out" if prefix == "heldout" else prefix
        ax_loss.plot([r["sequences_seen"] for r in held], [r[f"{prefix}_loss"] for r in held],
                     "o-", ms=2, color=line.get_color(), label=f"{label} ({name})")
        ax_acc.plot(seen, [r["accuracy"] for r in train], lw=0.8, alpha=0.6,
                    color=line.get_color())
        ax_acc.plot([r["sequences_seen"] for r in held], [r[f"{prefix}_accuracy"] for r in held],
                    "o-", ms=2, color=line.get_color(), label=f"{label} ({name})")
        skipped = [r["sequences_seen"] for r in train if r.get("skipped")]
        if skipped:
            # On the axes' top edge in axes coordinates: a skipped step's loss may be inf.
            ax_loss.plot(skipped, [1.0] * len(skipped), "|", ms=10, color="red",
                         transform=ax_loss.get_xaxis_transform(), clip_on=False,
                         label=f"{label}: {len(skipped)} skipped updates")
    drawn = [y for line in ax_loss.get_lines() for y in line.get_ydata()]
    positive = all(y > 0 for y in drawn if y == y and abs(y) != float("inf"))
    # a log scale needs every loss above 0 (a loss of exactly 0 would warn and vanish)
    ax_loss.set(xlabel="sequences seen", ylabel="cross-entropy",
                yscale="log" if positive else "linear", title="loss")
    ax_acc.set(xlabel="sequences seen", ylabel="accuracy", ylim=(0, 1.02), title="accuracy")
    ax_loss.legend(fontsize=7)
    ax_acc.legend(fontsize=7)
    return _finish(fig, path, title)


def plot_confusion(matrix, names=None, path=None, title=None):
    """A confusion matrix as a grid of counts (rows: the true class, columns: the predicted
    one; the count written in each cell that has one).

    Args:
      matrix: ``(C, C)`` counts, as [`confusion`][attnrnn.train.evaluation.confusion] gives.
      names: the classes' names (default ``0..C-1``).
      path: save the figure there (PNG) when given.
      title: a figure title.

    Returns:
      The matplotlib figure.
    """
    import numpy as np

    matrix = np.asarray(matrix)
    names = [str(n) for n in (range(len(matrix)) if names is None else names)]
    side = min(3 + 0.35 * len(matrix), 14)
    fig, ax = _pyplot(path).subplots(figsize=(side + 1, side), constrained_layout=True)
    image = ax.imshow(matrix, cmap="Blues")
    if len(matrix) <= 30:  # beyond that, the colours alone
        for (i, j), count in np.ndenumerate(matrix):
            if count:
                ax.text(j, i, count, ha="center", va="center", fontsize=7,
                        color="white" if count > matrix.max() / 2 else "black")
    ticks = range(len(matrix))
    ax.set(xlabel="predicted", ylabel="true", xticks=ticks, yticks=ticks)
    ax.set_xticklabels(names, rotation=90 if max(map(len, names)) > 3 else 0, fontsize=7)
    ax.set_yticklabels(names, fontsize=7)
    fig.colorbar(image, ax=ax, shrink=0.8)
    return _finish(fig, path, title)

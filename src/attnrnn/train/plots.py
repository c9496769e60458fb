"""Loss and accuracy curves with matplotlib (the Agg backend when saving from the CLI)."""

from __future__ import annotations

__all__ = ["plot_curves"]


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
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

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
    if title:
        fig.suptitle(title)
    if path is not None:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig

import math

from attnrnn.train.plots import plot_curves


def test_skipped_updates_are_marked():
    history = [{"step": s, "sequences_seen": 32 * s, "loss": math.inf if s in (3, 7) else 1.0,
                "accuracy": 0.5, "skipped": s in (3, 7)} for s in range(1, 11)]
    history.append({"step": 10, "sequences_seen": 320, "heldout_loss": 1.0,
                    "heldout_accuracy": 0.5})
    fig = plot_curves({"raw": history, "bounded": [dict(r, skipped=False) for r in history]})
    ax_loss = fig.axes[0]
    marks = [line for line in ax_loss.get_lines() if "skipped" in line.get_label()]
    assert [m.get_label() for m in marks] == ["raw: 2 skipped updates"]
    assert list(marks[0].get_xdata()) == [96, 224]

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


def test_a_loss_of_zero_is_drawn_on_a_linear_scale_without_a_warning():
    import warnings

    history = [{"step": s, "sequences_seen": 32 * s, "loss": 1.0 / s if s < 5 else 0.0,
                "accuracy": 1.0, "skipped": False} for s in range(1, 8)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # it warned "cannot be log-scaled" from matplotlib
        fig = plot_curves({"run": history})
    assert fig.axes[0].get_yscale() == "linear"
    assert plot_curves({"run": history[:4]}).axes[0].get_yscale() == "log"


def test_confusion_matrix_is_drawn_with_the_class_names(tmp_path):
    from attnrnn.train.plots import plot_confusion

    fig = plot_confusion([[5, 1], [0, 4]], ["falling", "rising"], tmp_path / "c.png")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["falling", "rising"]
    assert sorted(t.get_text() for t in ax.texts) == ["1", "4", "5"]  # no 0 written
    assert (tmp_path / "c.png").stat().st_size > 0

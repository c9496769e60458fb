import math

import numpy as np

from attnrnn.train import debug_loss


def test_find_spikes_uses_twice_the_running_median():
    losses = np.ones(40)
    losses[25] = 2.5  # a spike
    losses[30] = 1.9  # below twice the median: not one
    assert debug_loss.find_spikes(losses) == [25]
    assert debug_loss.find_spikes(losses[:20]) == []  # no full window yet


def test_spike_report_reads_a_history():
    history = [{"step": 0, "sequences_seen": 0, "heldout_loss": math.log(4),
                "heldout_accuracy": 0.25, "heldout_errors": 1920}]
    losses = [1.3] * 25 + [3.0] + [0.5] * 10
    history += [{"step": i + 1, "sequences_seen": 32 * (i + 1), "loss": v, "accuracy": 0.5}
                for i, v in enumerate(losses)]
    history[-1].update(heldout_loss=0.4, heldout_accuracy=0.9, heldout_errors=256)
    report = debug_loss.spike_report(history)
    assert report["spike_steps"] == [26] and report["spikes_above_initial_loss"] == 1
    assert report["max_loss"] == 3.0 and report["max_loss_step"] == 26
    assert report["final_heldout_accuracy"] == 0.9 and report["sequences_to_solve"] is None

"""Why AttentionRNN plateaus, and what the bounds change: the input term's attention weight
``a_0`` over training, at the two X/Y symbols and at the distractors, for the
nonexpansive-only model (``attention:inf,raw,nonexp``) and the bounded default
(``attention:inf``), temporal order *moderate*, seed 0. Writes ``docs/attention_diagnostics.png``
and prints the figures it plots.

    .venv/bin/python experiments/attention/diagnostics.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from attnrnn import attention_rnn
from attnrnn import train as training
from attnrnn.train import make_task, parse_model

MODELS = ("attention:inf,raw,nonexp", "attention:inf")


def input_weights(params, spec, xs, mask):
    """Mean ``a_0`` (the weight of the input term) at the first X/Y symbol, at the second,
    and at the distractor steps."""
    def one(x, m):
        _, a = attention_rnn(params.cell, x, k=spec.k, mask=m, options=spec.options,
                             return_attention=True)
        return a[:, 0]

    a0 = jax.vmap(one)(xs, mask)
    symbol = jnp.argmax(xs, -1)
    relevant = mask & (symbol < 2)
    order = jnp.cumsum(relevant, axis=1)
    distractor = mask & (symbol >= 2) & (symbol < 6)
    mean = lambda where: jnp.sum(a0 * where) / jnp.sum(where)  # noqa: E731
    return mean(relevant & (order == 1)), mean(relevant & (order == 2)), mean(distractor)


def trace(model, steps, every=20, seed=0):
    config = training.TrainConfig(level="moderate", model=model, steps=steps, seed=seed,
                                  eval_every=every, heldout=256).resolve()
    task = make_task("temporal-order", level="moderate")
    spec = parse_model(model)
    probe = training.heldout_set(task, 256)
    # The probe goes in as arguments: as closed-over constants XLA spends seconds folding them.
    measure = jax.jit(lambda p, xs, mask: input_weights(p, spec, xs, mask))
    rows = []

    def on_chunk(state, history, records):
        first, second, distractor = (float(v) for v in measure(state.params, probe[0],
                                                                 probe[2]))
        rows.append((int(state.step) * config.batch, first, second, distractor,
                     records[-1].get("heldout_accuracy", np.nan)))

    training.fit(config, on_chunk=on_chunk, progress=False)
    return np.array(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--out", default=str(Path(__file__).parents[2] / "docs" /
                                             "attention_diagnostics.png"))
    args = parser.parse_args()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True, sharey=True)
    for ax, model in zip(axes, MODELS):
        rows = trace(model, args.steps)
        seen, first, second, distractor, accuracy = rows.T
        ax.plot(seen, first, label="a_0 at the first X/Y symbol")
        ax.plot(seen, second, label="a_0 at the second X/Y symbol")
        ax.plot(seen, distractor, label="a_0 at the distractors a-d")
        ax.plot(seen, accuracy, "k:", label="held-out accuracy")
        ax.set(title=model, xlabel="sequences seen", ylim=(0, 1.02))
        print(model, "(sequences seen, a_0 first, a_0 second, a_0 distractors, accuracy)")
        for row in rows[:: max(1, len(rows) // 6)]:
            print("   ", " ".join(f"{v:.3f}" for v in row))
    axes[0].set_ylabel("mean weight of the input term / accuracy")
    axes[0].legend(fontsize=8)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

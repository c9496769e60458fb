"""Probe: AttentionRNN(∞) whose recency rates are learned (one per head), on the real sets.

The library's recency rates are fixed options. Before building learned ones into it, this
probe asks whether they would help where the fixed ones fall short (ArrowHead). The model is
the four-head recipe, the default when this was run
(`attention:inf,raw,nonexp,v=2,cap=5,heads=4,recency=0/0.5/1/2,bias`, its weights, bounds
and readout taken from the library) with the rates made parameters,
``λ_g = ρ_g²`` (ρ starts at the square roots of the fixed rates), run by a quadratic loop
written here (each step attends over every earlier state, their scores aged by ``λ_g`` per
step; the scores and the per-head mixing are the library's own functions). With the rates fixed
it equals the library's model (checked first, on ArrowHead).
Trained by the library's ``fit`` (``model=``, a ``FunctionModel``) under the README's protocol:
every default of ``attnrnn train --data FILE.npz``.

    python experiments/realdata/learned_recency.py --sets ArrowHead --seeds 0 1 2
"""

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from attnrnn import bounded_params
from attnrnn.attention import _per_head, _score  # the library's scoring and mixing, per head
from attnrnn.train import FunctionModel, TrainConfig, batch_loss, fit, parse_model

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import to_npz  # noqa: E402  (the same .npz files)

RECIPE = "attention:inf,raw,nonexp,v=2,cap=5,heads=4,recency=0/0.5/1/2,bias"


def states(cell, rates, xs, options):
    """Every state ``(T, m)`` of one unmasked sequence, quadratically: at step ``t`` head ``g``
    weighs the input term and each state ``s < t`` made before, scored ``w(h[s]) - λ_g (t-s)``."""
    p = bounded_params(cell, options)
    xs = jnp.concatenate([xs, jnp.ones((xs.shape[0], 1), xs.dtype)], axis=-1)  # the bias column
    T, m, H = xs.shape[0], p.V_x.shape[0], options.heads
    w0 = _score(xs @ p.Q_x.T, xs @ p.K_x.T, options)  # (T, H)
    v0 = xs @ p.V_x.T

    def step(carry, t):
        scores, values = carry  # of the states made so far (rows s < t)
        ages = (t - jnp.arange(T)).astype(xs.dtype)
        past = jnp.where((jnp.arange(T) < t)[:, None], scores - ages[:, None] * rates, -1e30)
        a = jax.nn.softmax(jnp.concatenate([w0[t][None], past]), axis=0)  # (T + 1, H)
        h = jnp.sum(_per_head(a, jnp.concatenate([v0[t][None], values]), H), axis=0)
        scores = scores.at[t].set(_score(p.Q_h[0] @ h, p.K_h[0] @ h, options))
        values = values.at[t].set(p.V_h[0] @ h)
        return (scores, values), h

    start = (jnp.zeros((T, H), xs.dtype), jnp.zeros((T, m), xs.dtype))
    return jax.lax.scan(step, start, jnp.arange(T))[1]


def learned_model(base, options, learn=True):
    """``base`` (the library's model of the recipe) with rates ``ρ²`` learned (``learn``;
    else held at the recipe's: the control, this file's loop with the library's model)."""
    fixed = jnp.asarray(options.recency, jnp.float32)

    def init(key):
        return {"model": base.init(key), "rho": jnp.sqrt(fixed)}

    def apply(params, xs, mask=None):
        if mask is not None:
            raise ValueError("this probe runs unmasked sequences only")
        model = params["model"]
        rho = params["rho"] if learn else jax.lax.stop_gradient(params["rho"])
        last = states(model.cell, rho ** 2, xs, options)[-1]
        return last @ model.readout.W.T + model.readout.b

    def loss(params, xs, labels, mask=None, tolerance=None):
        return batch_loss(apply, base.predict, params, xs, labels, mask, tolerance)

    return FunctionModel(init, apply, base.predict, loss,
                         f"{RECIPE} ({'rates learned' if learn else 'control: this loop'})")


def check_equal_to_the_library(config, base, options):
    task = config.make_task()
    params = base.init(jax.random.PRNGKey(0))
    xs = task.train[0][:2]
    ours = jax.vmap(lambda x: states(params.cell, jnp.asarray(options.recency), x, options)[-1]
                    @ params.readout.W.T + params.readout.b)(xs)
    theirs = jax.vmap(lambda x: base.apply(params, x))(xs)
    np.testing.assert_allclose(ours, theirs, rtol=2e-4, atol=2e-5)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=["ArrowHead"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fixed", action="store_true", help="the control: rates not learned")
    parser.add_argument("--jsonl", type=Path, default=HERE / "learned-recency.jsonl")
    args = parser.parse_args(argv)
    options = parse_model(RECIPE).options
    for name in args.sets:
        path = to_npz(name, HERE / "data")
        config = TrainConfig(data=str(path), model=RECIPE)
        base = config.build_model()
        check_equal_to_the_library(config, base, options)
        model = learned_model(base, options, learn=not args.fixed)
        for seed in args.seeds:
            start = time.perf_counter()
            state, _, summary = fit(config.replace(seed=seed), model=model, progress=False)
            row = {"set": name, "model": model.name, "seed": seed,
                   "accuracy": summary["test_accuracy"],
                   "rates": [round(float(r), 4) for r in state.params["rho"] ** 2],
                   "seconds": time.perf_counter() - start}
            print(json.dumps(row), flush=True)
            with args.jsonl.open("a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()

"""The ``attnrnn`` command line (also ``python -m attnrnn``)."""

from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp
import numpy as np


def _examples(args) -> int:
    """Prints the homework's worked examples, computed by the library."""
    import attnrnn as ar

    jax.config.update("jax_enable_x64", True)
    np.set_printoptions(precision=4, suppress=True)
    print("1.1 Convolution")
    print(
        "  21x12 input, 4x5 kernel, stride 4 -> output",
        ar.conv_output_shape((21, 12), (4, 5), stride=4),
    )
    key_x, key_w = jax.random.split(jax.random.PRNGKey(1))
    x = jnp.round(jax.random.normal(key_x, (5, 7), jnp.float64), 1)
    w = jnp.round(jax.random.normal(key_w, (1, 5, 3), jnp.float64), 1)
    y = ar.conv(x, w, stride=2)
    print("  x in R^5x7, W in R^1x5x3 (random, rounded to 0.1), stride 2")
    print(f"  f_W(x) has shape {y.shape}: {np.asarray(y)}")
    g = jnp.ones_like(y)
    dw = ar.conv_weight_grad(x, g, 3, stride=2)
    dx = ar.conv_input_grad(w, g, x.shape, stride=2)
    _, vjp = jax.vjp(lambda x, w: ar.conv(x, w, stride=2), x, w)
    auto_dx, auto_dw = vjp(g)
    print(f"  with l = sum f_W(x): dl/dW has W's shape {dw.shape}:\n{np.asarray(dw[0])}")
    print(f"  dl/dx has x's shape {dx.shape}:\n{np.asarray(dx)}")
    error = max(float(jnp.abs(dw - auto_dw).max()), float(jnp.abs(dx - auto_dx).max()))
    print(f"  closed forms (as convolutions) vs jax.vjp: max difference {error:.1e}")

    print("\n1.2 Gated RNN (n = 4, m = 8, T = 12, random weights and inputs)")
    key_p, key_x = jax.random.split(jax.random.PRNGKey(0))
    params = ar.gated_rnn_init(key_p, 4, 8, dtype=jnp.float64)
    xs = jax.random.normal(key_x, (12, 4), jnp.float64)
    hs = ar.gated_rnn(params, xs)
    h_prev = jnp.concatenate([jnp.zeros((1, 8)), hs[:-1]])
    jacobians = jax.vmap(lambda h, x: ar.gated_rnn_jacobian(params, h, x))(h_prev, xs)
    product = jnp.eye(8)
    print("   t   |h[t]|   ||dh[t]/dh[t-1]||_2   ||dh[t]/dh[0]||_2")
    for t in range(xs.shape[0]):
        product = jacobians[t] @ product
        print(
            f"  {t + 1:2d}   {float(jnp.linalg.norm(hs[t])):6.3f}   "
            f"{float(jnp.linalg.norm(jacobians[t], 2)):10.4f}   "
            f"{float(jnp.linalg.norm(product, 2)):16.3e}"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attnrnn", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    examples = commands.add_parser("examples", help="print the homework's worked examples")
    examples.set_defaults(run=_examples)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())

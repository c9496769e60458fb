"""Float64 NumPy references shared by several test modules (written from the docstrings'
equations, independently of the library's code)."""

import numpy as np

SQUARINGS = 8  # attnrnn.spectral.SQUARINGS, restated: the tests check the documented ν


def spectral_bound(w):
    """ν(W) = ‖(WᵀW)^p‖_F^{1/(2p)}, p = 2^SQUARINGS, by matrix_power on the Gram matrix
    normalised by its exact spectral norm (np.linalg.norm(·, 2))."""
    w = np.asarray(w, np.float64)
    gram = w.T @ w
    top = np.linalg.norm(gram, 2)
    if top == 0:
        return 0.0
    p = 2**SQUARINGS
    return np.sqrt(top) * np.linalg.norm(np.linalg.matrix_power(gram / top, p)) ** (1 / (2 * p))


def rescale_to_bound(stack, bound):
    """Each matrix of ``stack`` as ``W / max(1, ν(W) / bound)``."""
    return np.stack([w / max(1.0, spectral_bound(w) / bound) for w in np.asarray(stack)])


def softmax(w):
    e = np.exp(w - w.max())
    return e / e.sum()


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def gated_rnn(params, xs, h0=None, mask=None, reverse=False):
    """The gated RNN, a plain loop: ``c = σ(W_c x + W_h h)``, ``h = c ⊙ h + (1 − c) ⊙ W_x x``;
    a masked step carries ``h``."""
    W_c, W_h, W_x = (np.asarray(w, np.float64) for w in params)
    xs = np.asarray(xs, np.float64)
    T = xs.shape[0]
    h = np.zeros(W_h.shape[0]) if h0 is None else np.asarray(h0, np.float64)
    out = np.zeros((T, W_h.shape[0]))
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        if mask is None or mask[t]:
            c = sigmoid(W_c @ xs[t] + W_h @ h)
            h = c * h + (1 - c) * (W_x @ xs[t])
        out[t] = h
    return out


def attention_rnn(params, xs, k, mask=None, scale=1.0, cap=None, norm=False, heads=1,
                  recency=None):
    """AttentionRNN(k) (k zero states before the start) and AttentionRNN(∞) (quadratic: every
    past state kept), a plain loop, with the stabilisers as their docstring states (score
    ``scale``, soft ``cap``, ``norm``-alised past states) and ``heads`` (head g: the g-th
    slices of queries, keys and values, its own softmax) with ``recency`` (head g's score of
    the i-th most recent state lowered by recency[g]·i). Returns ``hs`` and the lag-indexed
    attention ``a`` (with a last axis of heads when heads > 1); a masked step carries ``h``,
    adds nothing to the history and has a zero row."""
    def score(q, kk):
        w = scale * (q @ kk)
        return cap * np.tanh(w / cap) if cap else w

    def past(h):
        return h / np.sqrt(np.mean(h**2) + 1e-6) if norm else h

    Q_x, K_x, V_x, Q_h, K_h, V_h = (np.asarray(w, np.float64) for w in params)
    xs = np.asarray(xs, np.float64)
    T, m, d = xs.shape[0], V_x.shape[0], Q_x.shape[0]
    rates = [0.0] * heads if recency is None else list(recency)
    qk, dv = d // heads, m // heads
    history = [np.zeros(m) for _ in range(k)] if k is not None else []  # most recent first
    h = np.zeros(m)
    hs = np.zeros((T, m))
    a_all = np.zeros((T, T if k is None else k + 1, heads))
    for t in range(T):
        if mask is not None and not mask[t]:
            hs[t] = h
            continue
        x = xs[t]
        terms = [(Q_x @ x, K_x @ x, V_x @ x)]
        for i, state in enumerate(history):
            j = 0 if k is None else i
            terms.append((Q_h[j] @ past(state), K_h[j] @ past(state), V_h[j] @ past(state)))
        h = np.zeros(m)
        for g in range(heads):
            qs, vs = slice(g * qk, (g + 1) * qk), slice(g * dv, (g + 1) * dv)
            scores = np.array([score(q[qs], kk[qs]) - rates[g] * lag
                               for lag, (q, kk, _) in enumerate(terms)])
            a = softmax(scores)
            for lag, (_, _, v) in enumerate(terms):
                h[vs] += a[lag] * v[vs]
            a_all[t, : len(a), g] = a
        history = [h] + history
        if k is not None:
            history = history[:k]
        hs[t] = h
    return hs, (a_all[..., 0] if heads == 1 else a_all)

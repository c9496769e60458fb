"""Formulas that the docstrings and pages write as code spans in Unicode (``∂ℓ/∂W_x``,
``‖V_x' x‖ ≤ c ‖x‖₁``, readable in ``help()`` and in a terminal) turned into TeX, so that the
site typesets them (docs/hooks/mathml.py). A code span is a formula when it holds a symbol
that code does not (``∂ Σ ‖ ⊙ ∈ ⌈ √ …``, a Greek letter, a superscript or a braced
subscript); the rest stays code.

The translation is small and literal: each symbol its TeX command, ``√T`` a square root of the
token after it, ``R^m`` the reals, superscript and subscript digits as scripts, a word of two
or more letters upright (``max``, ``exp`` as operators), a subscript word of three or more
letters upright (``x_pad``)."""

import re

FORMULA = re.compile(r"[Σ∑∂∈⌈⌉⌊⌋‖⊙√∇⋯σλδνθ²³≤≥≈]|\^[{A-Za-z0-9]|_\{")
_SYMBOLS = {
    "∂": r"\partial ", "ℓ": r"\ell ", "Σ": r"\sum", "∑": r"\sum", "‖": r"\Vert ",
    "⊙": r"\odot ", "∈": r"\in ", "≤": r"\le ", "≥": r"\ge ", "≈": r"\approx ",
    "·": r"\cdot ", "×": r"\times ", "−": "-", "±": r"\pm ", "~": r"\sim ", "⋯": r"\cdots ",
    "⌈": r"\lceil ", "⌉": r"\rceil ", "⌊": r"\lfloor ", "⌋": r"\rfloor ", "½": r"\tfrac12 ",
    "∇": r"\nabla ", "→": r"\to ", "σ": r"\sigma ", "λ": r"\lambda ", "δ": r"\delta ",
    "ν": r"\nu ", "α": r"\alpha ", "β": r"\beta ", "γ": r"\gamma ", "ε": r"\varepsilon ",
    "μ": r"\mu ", "τ": r"\tau ", "θ": r"\theta ", "ω": r"\omega ",
}
_SUPERSCRIPTS = dict(zip("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-"))
_SUBSCRIPTS = dict(zip("₀₁₂₃₄₅₆₇₈₉", "0123456789"))
_OPERATORS = {"max", "min", "exp", "log", "diag", "softmax", "tanh"}
_WORD = re.compile(r"(?<![\\A-Za-z_{])([A-Za-z]{2,})(?![A-Za-z])")
_NAME = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}_[A-Za-z0-9]+")  # fan_in: a name, upright


def is_formula(text: str) -> bool:
    return bool(FORMULA.search(text))


def to_tex(text: str) -> str:
    tex = re.sub(r"√([A-Za-z0-9_]+|\([^)]*\))", lambda m: r"\sqrt{" + m.group(1).strip("()")
                 + "}", text)
    tex = re.sub(r"\bR\^", r"\\mathbb{R}^", tex)
    tex = _NAME.sub(lambda m: r"\mathrm{%s}_{\mathrm{%s}}" % tuple(m.group().split("_", 1)), tex)
    tex = re.sub(r"(?<![A-Za-z])([A-Za-z])_([A-Za-z]{3,})",
                 lambda m: m.group(1) + r"_{\mathrm{" + m.group(2) + "}}", tex)
    tex = re.sub(r"_([A-Za-z0-9]{2})(?![A-Za-z0-9])", r"_{\1}", tex)
    tex = _WORD.sub(lambda m: (r"\%s " if m.group(1) in _OPERATORS else r"\mathrm{%s}")
                    % m.group(1), tex)
    tex = re.sub(r"[⁰¹²³⁴⁵⁶⁷⁸⁹⁻]+", lambda m: "^{" + "".join(_SUPERSCRIPTS[c] for c in m.group())
                 + "}", tex)
    tex = re.sub(r"[₀₁₂₃₄₅₆₇₈₉]+", lambda m: "_{" + "".join(_SUBSCRIPTS[c] for c in m.group())
                 + "}", tex)
    return "".join(_SYMBOLS.get(c, c) for c in tex)

"""Renders the site's math at build time, as MathML (every current browser shows it), so the
pages read offline: pymdownx.arithmatex marks each formula, and this hook replaces it with the
MathML that ``latex2mathml`` makes of it. ``aligned`` becomes an ``array{rl}`` (which
latex2mathml lays out as a table; it has no ``aligned``), marked ``class="aligned"`` so that
docs/stylesheets/math.css lines its columns up (browsers ignore MathML's ``columnalign``).

The math is set in STIX Two Math, a font with OpenType MATH tables (large operators,
stretchy brackets), which the site carries: without one, a browser draws ``∑`` and ``⌊ ⌋``
at text size. It is copied from the ``ziamath`` package (which bundles it) into the built
site. A code span that holds a formula written in Unicode (docs/hooks/unicode_math.py: the
docstrings stay readable in a terminal) is typeset too. Code in table cells (configuration
strings, test names) gets a break opportunity after each comma, slash, ``::`` and
underscore, so a narrow column breaks it there, never inside a word."""

import html
import importlib.metadata
import re
import shutil
import sys
from pathlib import Path

from latex2mathml.converter import convert

sys.path.insert(0, str(Path(__file__).parent))  # mkdocs loads a hook by its path alone
from unicode_math import is_formula, to_tex  # noqa: E402

_FORMULA = re.compile(r'<(div|span) class="arithmatex">(.*?)</\1>', re.S)
_CELL_CODE = re.compile(r"(<td>[^<]*<code>)([^<]*)(</code>)")
_INLINE_CODE = re.compile(r"(?<!<pre>)<code>([^<]*)</code>")  # a code span, not a block
FONT = "STIXTwoMath-Regular.ttf"


def to_mathml(tex: str, display: bool) -> str:
    aligned = r"\begin{aligned}" in tex
    tex = tex.replace(r"\begin{aligned}", r"\begin{array}{rl}").replace(
        r"\end{aligned}", r"\end{array}")
    mathml = convert(tex.strip(), display="block" if display else "inline")
    # display style, as TeX sets `aligned` (full-size fractions and sums)
    return mathml.replace("<mtable>", '<mtable class="aligned" displaystyle="true">') \
        if aligned else mathml


def _replace(match) -> str:
    tag, body = match.groups()
    tex = html.unescape(body).strip()
    display = tex.startswith(r"\[")
    mathml = to_mathml(tex[2:-2], display)
    return f'<div class="math">{mathml}</div>' if tag == "div" else mathml


def _breakable(match) -> str:
    start, code, end = match.groups()
    return start + re.sub(r"(,|/|::|_)", r"\1<wbr>", code) + end


def _code_formula(match) -> str:
    text = html.unescape(match.group(1))
    return to_mathml(to_tex(text), display=False) if is_formula(text) else match.group()


def on_page_content(content, page, config, files):
    content = _INLINE_CODE.sub(_code_formula, _FORMULA.sub(_replace, content))
    return _CELL_CODE.sub(_breakable, content)


def on_post_build(config):
    fonts = Path(config["site_dir"]) / "assets" / "fonts"
    fonts.mkdir(parents=True, exist_ok=True)
    # found by the package's file list: importing ziamath would only warn about its own use of
    # pkg_resources
    font = next(f for f in importlib.metadata.files("ziamath") if f.name == FONT)
    shutil.copyfile(font.locate(), fonts / FONT)

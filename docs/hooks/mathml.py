"""Renders the site's math at build time, as MathML (every current browser shows it), so the
pages read offline: pymdownx.arithmatex marks each formula, and this hook replaces it with the
MathML that ``latex2mathml`` makes of it. ``aligned`` becomes an ``array{rl}`` (which
latex2mathml lays out as a table; it has no ``aligned``)."""

import html
import re

from latex2mathml.converter import convert

_FORMULA = re.compile(r'<(div|span) class="arithmatex">(.*?)</\1>', re.S)


def to_mathml(tex: str, display: bool) -> str:
    tex = tex.replace(r"\begin{aligned}", r"\begin{array}{rl}").replace(
        r"\end{aligned}", r"\end{array}")
    return convert(tex.strip(), display="block" if display else "inline")


def _replace(match) -> str:
    tag, body = match.groups()
    tex = html.unescape(body).strip()
    display = tex.startswith(r"\[")
    mathml = to_mathml(tex[2:-2], display)
    return f'<div class="math">{mathml}</div>' if tag == "div" else mathml


def on_page_content(content, page, config, files):
    return _FORMULA.sub(_replace, content)

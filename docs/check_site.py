"""The built site reads offline: ``make docs`` runs this on ``site/`` after the build.

Fails (exit 1, one line per problem) when a page loads anything from the network — a script,
a stylesheet, a font, an image — or when a module page that holds equations shows them as raw
TeX instead of rendered MathML."""

from __future__ import annotations

import re
import sys
from pathlib import Path

# Where a page would fetch something: src="http…", <link … href="http…">, CSS url(http…).
_REMOTE = re.compile(r'(?:\bsrc=|<link\b[^>]*\bhref=)["\'](https?:)?//|url\(["\']?(https?:)?//')
# The module pages whose docstrings hold the models' equations.
EQUATIONS = ("attnrnn.conv", "attnrnn.gated", "attnrnn.attention", "attnrnn.lstm",
             "attnrnn.lstm1997")


def problems(site: Path) -> list[str]:
    found = []
    for page in sorted(site.rglob("*.html")) + sorted(site.rglob("*.css")):
        text = page.read_text(errors="replace")
        for match in _REMOTE.finditer(text):
            fetched = text[match.start():match.end() + 40]
            found.append(f"{page.relative_to(site)}: loads {fetched!r}")
    for module in EQUATIONS:
        page = site / "api" / f"{module}.html"
        text = page.read_text() if page.exists() else ""
        if "<math" not in text or re.search(r"\\\[|\\begin\{", text):
            found.append(f"api/{module}.html: its equations are not rendered MathML")
    return found


if __name__ == "__main__":
    found = problems(Path(sys.argv[1] if len(sys.argv) > 1 else "site"))
    print("\n".join(found) or "site: nothing loaded from the network; equations rendered")
    sys.exit(1 if found else 0)

"""The built site as a reader sees it: ``make docs`` opens every page of ``site/`` in headless
Chromium (Debian's ``chromium``, 1280 × 900) after the build and fails (exit 1, one line per
problem) when a page shows

- raw TeX (``\\(``, ``$``, ``\\begin{``, ``\\frac`` … in the text), or math in a code span
  (``Σ``, ``∂``, ``⌊``, ``^{`` …: a formula written as code instead of typeset);
- a list item run into the paragraph before it (``* …`` in the text);
- a table wider than the page's column (it would scroll, or break words mid-token);
- a large operator (``∑``) of a display formula drawn at text size, a stretchy bracket shorter
  than the fraction it encloses, or the rows of an ``aligned`` block not lined up on their
  second column (what a browser without a math font, or ignoring MathML's ``columnalign``,
  shows);
- its math in another font than the STIX Two Math the site carries.

Each page is checked by a script injected into a copy of the site (nothing of ``site/`` is
changed), which writes what it found into the page; ``chromium --dump-dom`` returns it."""

from __future__ import annotations

import concurrent.futures
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM = "chromium"
_CHECK = r"""
<script>
window.addEventListener("load", () => document.fonts.ready.then(() => {
  const problems = [];
  const column = document.querySelector(".md-content__inner") || document.body;
  const limit = column.clientWidth + 1;
  for (const table of column.querySelectorAll("table")) {
    if (table.scrollWidth > limit)
      problems.push(`a table ${table.scrollWidth}px wide in a column of ${column.clientWidth}px `
                    + `(${table.rows[0].innerText.replace(/\s+/g, " ").slice(0, 50)}…)`);
  }
  const walker = document.createTreeWalker(column, NodeFilter.SHOW_TEXT);
  for (let node; (node = walker.nextNode());) {
    if (node.parentElement.closest("code, pre, script, style, math, .jp-OutputArea")) continue;
    const tex = node.data.match(/\\\(|\\\[|\$|\\begin\{|\\frac|\\sum|\\mathbb|\\lVert/);
    if (tex) problems.push(`raw TeX: ${node.data.trim().slice(0, 60)}`);
    if (/(^|\n)\s*\* \S/.test(node.data) && node.parentElement.closest("p"))
      problems.push(`a list item run into a paragraph: ${node.data.trim().slice(0, 60)}`);
  }
  for (const code of column.querySelectorAll("code")) {
    if (code.closest("pre, .jp-OutputArea, .highlight")) continue;
    if (/[Σ∑∂∈⌊⌋‖⊙√∇]|\^\{|_\{/.test(code.textContent))
      problems.push(`math in a code span: ${code.textContent.slice(0, 60)}`);
  }
  for (const mo of column.querySelectorAll('math[display="block"] mo')) {
    const size = parseFloat(getComputedStyle(mo).fontSize), box = mo.getBoundingClientRect();
    if (/^[∑∏∫]$/.test(mo.textContent.trim()) && box.height < 1.3 * size)
      problems.push(`${mo.textContent} drawn ${box.height.toFixed(1)}px high at ${size}px text`);
    const fraction = mo.getAttribute("stretchy") === "true"
                     && mo.parentElement.querySelector("mfrac");
    if (fraction && box.height < 0.9 * fraction.getBoundingClientRect().height)
      problems.push(`${mo.textContent} ${box.height.toFixed(1)}px high around a fraction `
                    + `${fraction.getBoundingClientRect().height.toFixed(1)}px high`);
  }
  for (const table of column.querySelectorAll("mtable.aligned")) {
    // where each row's second column starts to draw (its cell's left edge is the same in
    // every row; what a centred cell moves is its content)
    const lefts = [...table.querySelectorAll(":scope > mtr > mtd:nth-child(2)")]
      .filter(cell => cell.firstElementChild)
      .map(cell => cell.firstElementChild.getBoundingClientRect().left);
    if (Math.max(...lefts) - Math.min(...lefts) > 1)
      problems.push(`aligned rows start their second column at ${lefts.map(Math.round)}px`);
  }
  const math = column.querySelector("math");
  if (math && !document.fonts.check('16px "STIX Two Math"', "∑"))
    problems.push("the math font did not load");
  const out = document.createElement("pre");
  out.id = "attnrnn-browser-check";
  out.textContent = "CHECK" + JSON.stringify(problems) + "END";
  document.body.appendChild(out);
}));
</script>
"""
_RESULT = re.compile(r"CHECK(\[.*?\])END", re.S)


def check_page(page: Path) -> list[str]:
    page.write_text(page.read_text().replace("</body>", _CHECK + "</body>"))
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                          "--allow-file-access-from-files", "--window-size=1280,900",
                          "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    found = _RESULT.findall(dom)
    return json.loads(found[-1]) if found else ["the check did not run (no result in the page)"]


def problems(site: Path) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "site"
        shutil.copytree(site, copy)
        pages = [p for p in sorted(copy.rglob("*.html")) if p.name != "404.html"]
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            found = pool.map(check_page, pages)
            return [f"{page.relative_to(copy)}: {problem}"
                    for page, page_problems in zip(pages, found) for problem in page_problems]


# A page with one of each problem: the check must find every one (``make docs`` runs this
# first, so a check that stopped seeing would fail rather than pass).
_BAD_PAGE = """<html><body><div class="md-content__inner" style="width: 600px">
<p>raw \\(x^2\\) and <code>∂ℓ/∂W</code>
* an item</p>
<table><tr><td style="min-width: 900px">wide</td></tr></table>
<math display="block"><munderover><mo style="font-size: 60%">∑</mo><mi>i</mi><mi>k</mi>
</munderover></math>
<math display="block"><mtable class="aligned"><mtr><mtd><mi>a</mi></mtd><mtd
style="text-align: center"><mo>=</mo><mi>bbbbbbbb</mi></mtd></mtr><mtr><mtd><mi>a</mi></mtd>
<mtd style="text-align: center"><mo>=</mo></mtd></mtr></mtable></math></div></body></html>"""
SHOULD_FIND = ("raw TeX", "math in a code span", "a list item", "a table", "∑ drawn",
               "aligned rows")


def self_test():
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "bad.html"
        page.write_text(_BAD_PAGE)
        found = check_page(page)
    missed = [kind for kind in SHOULD_FIND if not any(kind in p for p in found)]
    if missed:
        sys.exit(f"docs/check_browser.py no longer finds: {', '.join(missed)} (found {found})")


if __name__ == "__main__":
    if shutil.which(CHROMIUM) is None:
        sys.exit("docs/check_browser.py needs Chromium: apt-get install chromium")
    self_test()
    found = problems(Path(sys.argv[1] if len(sys.argv) > 1 else "site"))
    print("\n".join(found) or "site: every page typeset in Chromium (math, tables); the check "
          "finds each problem on a page made to have them")
    sys.exit(1 if found else 0)

"""The report page as one self-contained HTML file: no script, no request, every string escaped.

Everything a page shows comes through the helpers here, which escape every value they are
given (a column name like ``<script>`` is shown as text), and pictures are embedded as
``data:`` URIs. The Content-Security-Policy forbids scripts and every load but embedded images
and the page's own style, so even markup that slipped through could neither run nor call out.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass

CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; "
    "form-action 'none'"
)

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1100px; padding: 1em;
       color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
h3 { font-size: 1.05em; margin-bottom: 0.3em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f4f4f4; }
img { max-width: 100%; height: auto; image-rendering: pixelated; display: block; }
figure { margin: 1em 0; }
figcaption, .note { color: #555; font-size: 0.9em; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.85em;
      white-space: pre-wrap; word-break: break-all; }
nav a { margin-right: 0.8em; }
summary { cursor: pointer; color: #1f4e8c; margin: 0.6em 0; }
"""


def esc(value) -> str:
    """Any value as text safe inside an element or a quoted attribute."""
    return html.escape(str(value), quote=True)


def number(value, digits: int = 3) -> str:
    """A number for a table cell; ``n/a`` for a missing or non-finite one."""
    if value is None or isinstance(value, bool):
        return "n/a" if value is None else esc(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float) and not math.isfinite(value):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return esc(value)


def with_se(mean, se, digits: int = 3) -> str:
    return number(mean, digits) if se is None else f"{number(mean, digits)} ± {number(se, digits)}"


def table(header: list[str], rows: list[list], numeric: set[int] | None = None) -> str:
    """A table; cells are escaped unless given as :class:`Markup` (already-built HTML)."""
    numeric = numeric or set()
    # a table of name/value pairs has no header worth a row
    head = "".join(f"<th>{esc(h)}</th>" for h in header) if any(header) else ""
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            text = cell.html if isinstance(cell, Markup) else esc(cell)
            cls = ' class="num"' if i in numeric else ""
            cells.append(f"<td{cls}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    thead = f"<thead><tr>{head}</tr></thead>" if head else ""
    return f"<table>{thead}<tbody>{''.join(body)}</tbody></table>"


@dataclass(frozen=True)
class Markup:
    """HTML built by these helpers, passed through a table cell unescaped."""

    html: str


def image(png: bytes, alt: str, caption: str | None = None) -> str:
    """A PNG embedded as a ``data:`` URI, with its alternative text and a caption."""
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{uri}" alt="{esc(alt)}">{cap}</figure>'


def paragraph(text: str, cls: str | None = None) -> str:
    attr = f' class="{esc(cls)}"' if cls else ""
    return f"<p{attr}>{esc(text)}</p>"


def preformatted(text: str) -> str:
    return f"<pre>{esc(text)}</pre>"


@dataclass
class Section:
    """One part of the page: an id for the table of contents, a title, and its HTML body."""

    key: str
    title: str
    body: str


def page(title: str, subtitle: str, sections: list[Section]) -> str:
    """The whole document."""
    nav = " ".join(f'<a href="#{esc(s.key)}">{esc(s.title)}</a>' for s in sections)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="referrer" content="no-referrer">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>",
        f'<h1>{esc(title)}</h1><p class="note">{esc(subtitle)}</p><nav>{nav}</nav>',
    ]
    for s in sections:
        parts.append(f'<section id="{esc(s.key)}"><h2>{esc(s.title)}</h2>{s.body}</section>')
    parts.append("</body></html>\n")
    return "\n".join(parts)

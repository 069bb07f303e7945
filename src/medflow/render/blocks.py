"""The pieces a report section is made of, as plain data the one template renders:
paragraphs, notes, headings, tables, figures (PNG data URIs), preformatted text.

A block is a dict with a ``kind``; inline parts of a paragraph or a table cell are text or
``code(...)`` (optionally a link). Nothing here builds HTML: the template escapes everything.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

Block = dict[str, Any]
NONE = "\u2013"  # en dash: no value
TIMES = "\u00d7"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DPI = 90


def code(text: Any, href: str | None = None, id: str | None = None) -> dict[str, Any]:
    """An inline ``<code>`` part, a link when ``href`` is given."""
    return {"code": str(text), "href": href, "id": id}


def p(*parts: Any) -> Block:
    return {"kind": "p", "parts": [part if isinstance(part, dict) else str(part) for part in parts]}


def note(text: str) -> Block:
    return {"kind": "note", "text": text}


def heading(text: str, level: int = 4) -> Block:
    return {"kind": "heading", "level": level, "text": text}


def pre(text: str) -> Block:
    return {"kind": "pre", "text": text}


def div(id: str, *blocks: Block) -> Block:
    return {"kind": "div", "id": id, "blocks": list(blocks)}


def fmt(value: Any, digits: int = 3) -> str:
    """A number for humans: fixed decimals in [0.001, 1e4), else significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NONE
    if isinstance(value, int | np.integer):
        return str(value)
    value = float(value)
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}g}"


def cell(value: Any) -> Any:
    """A table cell: floats to 4 significant digits, missing values as a dash."""
    if isinstance(value, dict):
        return value
    if isinstance(value, float | np.floating):
        return NONE if math.isnan(value) else f"{float(value):.4g}"
    if value is None or (np.isscalar(value) and pd.isna(value)):
        return NONE
    return str(value)


def table(df: pd.DataFrame, index: bool = False, scroll: bool = False) -> Block:
    """``df`` as a table block; with ``index`` its index is the first column."""
    columns = [str(c) for c in df.columns]
    rows = [[cell(v) for v in row] for row in df.itertuples(index=False, name=None)]
    if index:
        columns = [str(df.index.name or ""), *columns]
        rows = [[cell(label), *row] for label, row in zip(df.index, rows, strict=True)]
    return {"kind": "table", "columns": columns, "rows": rows, "scroll": scroll}


def facts_table(facts: dict[str, Any]) -> Block:
    """A two-column table of named values (first column unnamed)."""
    return table(pd.DataFrame({"": list(facts), "value": list(facts.values())}))


def png(data: bytes, caption: str, alt: str) -> Block:
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return {"kind": "figure", "src": uri, "caption": caption, "alt": alt}


def figure(fig: Figure, caption: str, alt: str) -> Block:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return png(buffer.getvalue(), caption, alt)


def png_file(path: Path, caption: str, alt: str) -> Block:
    """The PNG file embedded, or a note when it is missing or not a PNG."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return note(f"{path.name} not found in {path.parent}.")
    if not data.startswith(PNG_SIGNATURE):
        return note(f"{path} is not a PNG file.")
    return png(data, caption, alt)


def joined(values: Iterable[Any], sep: str = ", ") -> str:
    return sep.join(map(str, values))

"""Small tables: rows of named values, written as CSV and JSON and rendered as HTML.

No pandas: a table is a title, column names and rows; that is all the report needs.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from evaluation.cache import atomic_write_text

__all__ = ["Table"]


SIGNIFICANT_DIGITS = 6


def _plain(value: Any) -> Any:
    """A plain Python value; floats rounded to :data:`SIGNIFICANT_DIGITS` significant digits.

    The service batches requests, and a convolution's float32 result can differ in the last bits
    with the batch it ran in; rounding keeps the tables of a resumed run equal to those of an
    uninterrupted one at every digit they show.
    """
    if hasattr(value, "item") and callable(value.item):
        try:
            value = value.item()
        except (ValueError, TypeError):
            pass
    if isinstance(value, float) and math.isfinite(value) and value != 0.0:
        return float(f"{value:.{SIGNIFICANT_DIGITS}g}")
    return value


def _fmt(value: Any, digits: int) -> str:
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.{digits}f}"
    return str(value)


@dataclass
class Table:
    """A titled table.

    Attributes:
        name: File stem for ``<name>.csv`` / ``<name>.json``.
        title: Caption in the report.
        columns: Column names.
        rows: One sequence of values per row, aligned with ``columns``.
        note: Text shown under the table (e.g. how many images were left out and why).
        digits: Decimals shown for floats in HTML.
        inline: Show the rows in the HTML report; ``False`` for per-image data behind a figure (the
            report links its CSV and JSON and says how many rows they hold).
    """

    name: str
    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    note: str = ""
    digits: int = 3
    inline: bool = True

    def add(self, *values: Any) -> None:
        if len(values) != len(self.columns):
            raise ValueError(f"table {self.name!r} has {len(self.columns)} columns; got {len(values)} values")
        self.rows.append([_plain(v) for v in values])

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]

    def column(self, name: str) -> list[Any]:
        i = self.columns.index(name)
        return [r[i] for r in self.rows]

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(self.columns)
        for row in self.rows:
            w.writerow(["" if v is None else v for v in row])
        return buf.getvalue()

    def to_json(self) -> str:
        def clean(v: Any) -> Any:
            if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
                return None
            return v

        return json.dumps(
            {"name": self.name, "title": self.title, "note": self.note, "columns": self.columns,
             "rows": [[clean(v) for v in r] for r in self.rows]},
            indent=1,
        )

    def write(self, folder: str | Path) -> list[Path]:
        """Write ``<name>.csv`` and ``<name>.json`` atomically; returns the paths."""
        folder = Path(folder)
        paths = [folder / f"{self.name}.csv", folder / f"{self.name}.json"]
        atomic_write_text(paths[0], self.to_csv())
        atomic_write_text(paths[1], self.to_json())
        return paths

    def to_html(self) -> str:
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_fmt(v, self.digits))}</td>" for v in row) + "</tr>"
            for row in self.rows
        )
        note = f'<p class="note">{html.escape(self.note)}</p>' if self.note else ""
        if not self.inline:
            return (
                f'<p class="note">{html.escape(self.title)}: {len(self.rows)} rows, columns '
                f'{html.escape(", ".join(map(str, self.columns)))} — '
                f'<a href="tables/{html.escape(self.name)}.csv">CSV</a> '
                f'<a href="tables/{html.escape(self.name)}.json">JSON</a></p>'
            )
        return (
            f'<figure class="table"><figcaption>{html.escape(self.title)} '
            f'<a href="tables/{html.escape(self.name)}.csv">CSV</a> '
            f'<a href="tables/{html.escape(self.name)}.json">JSON</a></figcaption>'
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}</figure>"
        )

    @staticmethod
    def from_records(name: str, title: str, records: Sequence[dict[str, Any]], note: str = "") -> "Table":
        columns = list(records[0].keys()) if records else []
        t = Table(name, title, columns, note=note)
        for r in records:
            t.add(*[r.get(c) for c in columns])
        return t

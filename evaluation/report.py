"""The HTML report: sections of text, tables, figures and findings, one self-contained folder.

Layout of the output folder::

    REPORT_DIR/report.html     the report (figures linked as PNG files beside it)
    REPORT_DIR/figures/*.png   every figure
    REPORT_DIR/tables/*.csv    every table, also as *.json
    REPORT_DIR/sections/*.json one file per finished experiment (what a resumed run reuses)
    REPORT_DIR/cache/          per-image results (see evaluation.cache)
"""

from __future__ import annotations

import datetime as _dt
import html
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from evaluation.cache import atomic_write_text
from evaluation.tables import Table

__all__ = ["Finding", "Section", "write_report", "save_section", "load_section"]


@dataclass
class Finding:
    """A reference finding (SPEC.md §4) stated as holds / does not hold with its numbers."""

    title: str
    holds: bool | None
    evidence: str
    #: Set (with ``holds = None``) when the intervals overlap: neither holds nor does not hold.
    inconclusive: bool = False

    @property
    def verdict(self) -> str:
        if self.holds is None and self.inconclusive:
            return "inconclusive"
        return {True: "holds", False: "does not hold", None: "not evaluated"}[self.holds]

    @classmethod
    def from_verdict(cls, title: str, verdict: str | None, evidence: str) -> "Finding":
        """A finding from "holds", "does not hold", "inconclusive" or ``None`` (not evaluated)."""
        states = {"holds": (True, False), "does not hold": (False, False), "inconclusive": (None, True),
                  None: (None, False)}
        if verdict not in states:
            raise ValueError(f"unknown verdict {verdict!r}; accepted: {list(states)}")
        holds, inconclusive = states[verdict]
        return cls(title, holds, evidence, inconclusive)


@dataclass
class Section:
    """One experiment's contribution to the report."""

    key: str
    title: str
    text: str = ""
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (relative png path, caption)
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0
    images: int = 0


def save_section(section: Section, folder: Path) -> Path:
    """Write the section (tables included) as JSON so a resumed run can reuse it."""
    data = asdict(section)
    path = folder / "sections" / f"{section.key}.json"
    atomic_write_text(path, json.dumps(data, indent=1, default=lambda o: None if o != o else str(o)))
    return path


def load_section(folder: Path, key: str) -> Section | None:
    """The saved section ``key`` or ``None`` (also when the file is unreadable)."""
    path = folder / "sections" / f"{key}.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    tables = [Table(**t) for t in data.pop("tables")]
    findings = [Finding(**f) for f in data.pop("findings")]
    figures = [tuple(f) for f in data.pop("figures")]
    return Section(tables=tables, findings=findings, figures=figures, **data)  # type: ignore[arg-type]


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #ccc;padding:.2em .5em;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
figure{margin:1em 0}figcaption{font-size:.9em;color:#444;margin-bottom:.3em}
img{max-width:100%;border:1px solid #eee}.note{font-size:.85em;color:#555}
.holds{color:#0a6b00;font-weight:bold}.fails{color:#b00000;font-weight:bold}.na{color:#777}
.inc{color:#a06000;font-weight:bold}
code,pre{background:#f6f6f6;padding:.1em .3em}
"""


def write_report(
    folder: Path,
    sections: list[Section],
    config: dict[str, Any],
    models: list[dict[str, Any]],
    title: str = "Explanation evaluation report",
) -> Path:
    """Render ``report.html`` and write every table as CSV and JSON.

    Args:
        folder: The report folder.
        sections: Experiments in display order.
        config: Run configuration (shown verbatim).
        models: One dict per model and version used (name, version, architecture, accuracy...).

    Returns:
        The path of ``report.html``.
    """
    folder = Path(folder)
    for s in sections:
        for t in s.tables:
            t.write(folder / "tables")
    findings = [f for s in sections for f in s.findings]
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p>Generated {_dt.datetime.now().isoformat(timespec='seconds')}.</p>"]
    if findings:
        parts.append("<h2>Reference findings (SPEC.md §4)</h2><ol>")
        for f in findings:
            cls = {"holds": "holds", "does not hold": "fails", "inconclusive": "inc"}.get(f.verdict, "na")
            parts.append(
                f'<li>{html.escape(f.title)}: <span class="{cls}">{f.verdict}</span> '
                f"— {html.escape(f.evidence)}</li>"
            )
        parts.append("</ol>")
    parts.append("<h2>Contents</h2><ul>")
    for s in sections:
        parts.append(f'<li><a href="#{s.key}">{html.escape(s.title)}</a></li>')
    parts.append("</ul>")
    for s in sections:
        parts.append(f'<h2 id="{s.key}">{html.escape(s.title)}</h2>')
        if s.text:
            parts.append("".join(f"<p>{html.escape(p)}</p>" for p in s.text.split("\n\n")))
        for t in s.tables:
            parts.append(t.to_html())
        for path, caption in s.figures:
            parts.append(
                f'<figure><figcaption>{html.escape(caption)}</figcaption>'
                f'<img src="{html.escape(path)}" alt="{html.escape(caption)}"></figure>'
            )
        parts.append(f'<p class="note">{s.images} images, {s.seconds:.1f} s.</p>')
    parts.append("<h2>Models</h2>")
    if models:
        parts.append(Table.from_records("models_used", "Models and versions used", models).to_html())
    parts.append("<h2>Configuration</h2><pre>" + html.escape(json.dumps(config, indent=1, default=str)) + "</pre>")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(parts)
        + "</body></html>"
    )
    if models:
        Table.from_records("models_used", "Models and versions used", models).write(folder / "tables")
    out = folder / "report.html"
    atomic_write_text(out, page)
    return out

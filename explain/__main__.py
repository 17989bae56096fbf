"""``python -m explain``: the registered explanation methods and their declared parameters.

``python -m explain methods`` lists every method (name, label, where it runs, cost class, model
kind); ``python -m explain describe NAME`` prints one method's description and, per parameter, its
type, default, accepted values, unit and doc line — the same declarations ``ListModels`` and
``GET /v1/models`` publish (:mod:`explain.schema`).
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _methods_text() -> str:
    from explain import registry

    registry.names()  # loads every method module
    rows = [("method", "label", "runs", "cost", "models")]
    for name in sorted(registry.METHODS):
        m = registry.METHODS[name]
        rows.append((name, m.label, "in the graph" if m.in_graph else "in the service", m.cost, m.applies_to))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _describe_text(name: str) -> str:
    from explain import registry

    known = registry.names()
    if name not in known:
        raise SystemExit(f"unknown method {name!r}; accepted: {known}")
    m = registry.METHODS[name]
    lines = [f"{name} — {m.label} ({m.kind}, {'in the graph' if m.in_graph else 'in the service'}, {m.cost}, "
             f"{m.applies_to} models)"]
    if m.description:
        lines.append(m.description)
    lines.append("")
    if not m.parameters:
        lines.append("no parameters")
    for p in m.parameters:
        unit = f" [{p.unit}]" if p.unit else ""
        lines.append(f"  {p.name} ({p.type.__name__}, default {p.default!r}; accepted {p.accepted()}){unit}")
        if p.doc:
            lines.append(f"      {p.doc}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m explain", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("methods", help="list the registered methods")
    describe = sub.add_parser("describe", help="one method's declared parameters")
    describe.add_argument("name")
    args = parser.parse_args(argv)
    print(_methods_text() if args.command == "methods" else _describe_text(args.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The README's method table is generated from the registry (the only list of methods) and kept equal."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from explain import registry  # noqa: E402


def test_readme_method_table_is_the_registry():
    """The README's method table is generated from the registry and kept equal to it."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    begin, end = "<!-- methods:begin -->\n", "\n<!-- methods:end -->"
    assert begin in text and end in text
    block = text[text.index(begin) + len(begin):text.index(end)]
    assert block == registry.table(), "regenerate: python -c 'from explain import registry; print(registry.table())'"

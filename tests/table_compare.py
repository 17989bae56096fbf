"""Comparison of two report folders' CSV tables, cell by cell."""

from __future__ import annotations


def assert_same_tables(a: dict[str, str], b: dict[str, str]) -> None:
    """Same tables, same cells; numbers equal to 1e-5 relative (the tables keep 6 significant
    digits, and a float32 result can differ in its last bits with the batch it ran in)."""
    import csv
    import io
    import math

    assert a.keys() == b.keys()
    for name in a:
        rows_a = list(csv.reader(io.StringIO(a[name])))
        rows_b = list(csv.reader(io.StringIO(b[name])))
        assert len(rows_a) == len(rows_b), name
        for ra, rb in zip(rows_a, rows_b):
            assert len(ra) == len(rb), name
            for x, y in zip(ra, rb):
                try:
                    fx, fy = float(x), float(y)
                except ValueError:
                    assert x == y, (name, x, y)
                    continue
                assert math.isclose(fx, fy, rel_tol=1e-5, abs_tol=1e-9) or (math.isnan(fx) and math.isnan(fy)), (name, x, y)

"""``python -m explain methods|describe``: the registry's methods and declared parameters, as text."""

from __future__ import annotations

import pytest

from explain import registry
from explain.__main__ import main


def test_methods_lists_every_registered_method_with_its_label_and_cost(capsys):
    assert main(["methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == set(registry.names())
    for name in registry.names():
        m = registry.METHODS[name]
        assert m.label in rows[name] and m.cost in rows[name] and m.applies_to in rows[name]
        assert ("in the graph" if m.in_graph else "in the service") in rows[name]


def test_describe_prints_each_declared_parameter(capsys):
    assert main(["describe", "rise"]) == 0
    out = capsys.readouterr().out
    for p in registry.METHODS["rise"].parameters:
        assert f"  {p.name} ({p.type.__name__}, default {p.default!r}; accepted {p.accepted()})" in out
        assert p.doc in out
    assert "accepted 1..100000" in out  # n_masks: the declared range, as ListModels publishes it


def test_describe_refuses_an_unknown_method_naming_the_accepted_ones():
    with pytest.raises(SystemExit, match=r"unknown method 'nope'; accepted: \[.*'gradcam'.*'rise'"):
        main(["describe", "nope"])

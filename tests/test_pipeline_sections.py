"""A saved report section is reused only by the experiment code that wrote it."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from evaluation.pipeline import _code_version


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_section_key_changes_with_the_experiment_code(tmp_path):
    path = tmp_path / "exp_mod.py"
    path.write_text("def run(ctx):\n    return 1\n")
    first = _code_version(_load(path, "exp_mod_a").run)
    assert first == _code_version(_load(path, "exp_mod_b").run)  # same source, same key
    path.write_text("def run(ctx):\n    return 2\n")
    assert _code_version(_load(path, "exp_mod_c").run) != first
    assert len(first) == 8 and _code_version(len) == "nosrc"  # a builtin has no source file


def test_experiment_decorator_refuses_anything_but_a_function():
    from dataclasses import dataclass

    from evaluation.pipeline import EXPERIMENTS, experiment

    with pytest.raises(TypeError, match=r"@experiment\('not_a_function'\) must decorate a function"):
        @experiment("not_a_function", "a class by mistake")
        @dataclass
        class Oops:
            x: int = 0
    assert "not_a_function" not in EXPERIMENTS


def test_every_registered_experiment_runs_a_function():
    import inspect

    from evaluation.pipeline import EXPERIMENTS, experiment_keys

    experiment_keys()  # loads the experiment modules
    assert EXPERIMENTS and all(inspect.isfunction(e.run) for e in EXPERIMENTS.values())

"""Visual summaries of the trained tiny classifiers, through a real gRPC server on loopback: the
issue's must-show on the synthetic cities, measured with the label maps."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evaluation.__main__ import main as evaluation_main


@pytest.fixture(scope="module")
def summaries_report(tiny_model_root, tmp_path_factory):
    from serving.server import start_server

    out = tmp_path_factory.mktemp("summaries")
    with start_server(str(tiny_model_root), port=0, host="127.0.0.1") as srv:
        assert evaluation_main(["--server", srv.address, "--out", str(out), "--experiments", "summaries",
                                "--ccg-images-per-class", "6", "--batch-size", "12", "--quiet"]) == 0
    return out


def _rows(folder, name):
    d = json.loads((folder / "tables" / f"{name}.json").read_text())
    return [dict(zip(d["columns"], r)) for r in d["rows"]]


def test_most_summaries_fall_on_the_planted_objects(summaries_report):
    rows = _rows(summaries_report, "summaries")
    assert len(rows) >= 4, rows
    on = [r["on planted"] == "yes" for r in rows]
    assert np.mean(on) > 0.5, [(r["model"], r["class"], r["majority object"], r["pointing hits"]) for r in rows]
    # both cities contribute summaries on their own objects, not only the one with the larger objects
    assert {r["class"] for r in rows if r["on planted"] == "yes"} == {"city_a", "city_b"}
    # the planted pixel share of the summaries is far above the planted share of the images (<= 0.12)
    assert np.mean([r["planted pixel share"] for r in rows]) > 0.2
    html = (summaries_report / "report.html").read_text()
    assert "Most summaries of a class fall on its planted discriminative objects" in html
    assert "by the stricter pixel rule" in html


def test_architecture_table_and_served_json(summaries_report):
    arch = {r["model"]: r for r in _rows(summaries_report, "summaries_architectures")}
    assert set(arch) == {"vgg11", "resnet18", "simple", "simpler"}
    assert sum(r["summaries"] for r in arch.values()) == len(_rows(summaries_report, "summaries"))
    for name in arch:
        data = json.loads((summaries_report / "summaries" / f"{name}.json").read_text())
        assert data["params"]["score"] == "log_odds" and data["params"]["perturbation"] == "constant"
        for cls in data["classes"].values():
            for s in cls["summaries"]:
                assert len(s["pointing_hits"]) == len(s["members"]) and s["regularity"] >= 1 / 3 - 1e-9

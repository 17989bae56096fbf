"""Visual summaries of the trained tiny classifiers, through a real gRPC server on loopback: the
issue's must-show on the synthetic cities, measured with the label maps."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evaluation.__main__ import main as evaluation_main

# ~1 min of perturbation masks on the tiny models: run by `make test-ci-slow` (CI), not `make test`.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tiny_model_root):
    from serving.server import start_server

    with start_server(str(tiny_model_root), port=0, host="127.0.0.1") as srv:
        yield srv


@pytest.fixture(scope="module")
def summaries_report(server, tmp_path_factory):
    out = tmp_path_factory.mktemp("summaries")
    assert evaluation_main(["--server", server.address, "--out", str(out), "--experiments", "summaries",
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


def test_a_summarised_image_maps_back_onto_its_summary(summaries_report, server, tiny_model_root):
    """The offline path a user takes (README): regions of an image's perturbation mask, from the
    service with the recorded parameters, assigned to the summaries read back from JSON."""
    from evaluation.data import regenerate_test_split
    from evaluation.summaries import assign_regions, extract_regions, summaries_from_json
    from serving.client import ExplanationClient

    data = json.loads((summaries_report / "summaries" / "vgg11.json").read_text())
    cls = next(c for c, v in data["classes"].items() if v["summaries"])
    stored = data["classes"][cls]["summaries"]
    summaries = summaries_from_json(stored)
    card = json.loads(next((tiny_model_root / "vgg11").glob("*/assets.extra/model_card.json")).read_text())
    test = regenerate_test_split(card["dataset"])
    members = stored[0]["members"]
    ids = [m["image_id"] for m in members]
    images = test.images[[test.ids.index(i) for i in ids]]
    params = {k: v for k, v in data["params"].items()}
    with ExplanationClient(server.address) as client:
        mask = client.explain("vgg11", "perturbation_mask", images, **params)
        acts, _ = client.features("vgg11", images)
    regions = extract_regions(mask.raw)
    assigned, _ = assign_regions(regions, acts, images.shape[1:3], summaries)
    back = {r.image for r, a in zip(regions, assigned) if a == summaries[0].index}
    # the same masks and features as in the run: most of the summary's own images map back onto it
    assert len(back) > len(ids) / 2, (len(back), len(ids), assigned.tolist())

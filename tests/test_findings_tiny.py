"""The restated findings 1, 2 and 4 on the session's tiny models, through a real server."""

from __future__ import annotations

import json
import re

import pytest

# an evaluation of three experiments over the tiny models (~30-40 s): `make test-ci-slow`
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def findings_sections(tiny_model_root, tmp_path_factory):
    from evaluation.__main__ import main as evaluation_main
    from serving.server import start_server

    out = tmp_path_factory.mktemp("findings")
    with start_server(str(tiny_model_root), port=0, host="127.0.0.1") as srv:
        assert evaluation_main(["--server", srv.address, "--out", str(out), "--experiments", "residuals,objects,similarity",
                                "--images-per-class", "8", "--quiet"]) == 0
    sections = {p.stem.split("-")[0]: json.loads(p.read_text()) for p in (out / "sections").glob("*.json")}
    for s in sections.values():  # shown when run with -s: the numbers recorded in bench/RESULTS.md
        for f in s["findings"]:
            print(f"\n{f['title']}: holds={f['holds']} inconclusive={f.get('inconclusive')}\n  {f['evidence']}")
    tables = {p.stem: json.loads(p.read_text()) for p in (out / "tables").glob("*.json")}
    return sections, tables


_INTERVAL = re.compile(r"-?\d+\.\d\d \[-?\d+\.\d\d, -?\d+\.\d\d\]")


def _state(f: dict) -> str:
    return "inconclusive" if f.get("inconclusive") else {True: "holds", False: "does not hold", None: "none"}[f["holds"]]


def test_finding2_restated_on_the_tiny_models(findings_sections):
    sections, tables = findings_sections
    (f,) = sections["objects"]["findings"]
    assert _state(f) in ("holds", "does not hold", "inconclusive")
    assert "causal Δ of object-removal twins" in f["evidence"]  # the twins render for the tiny cities
    for model in ("vgg11", "resnet18", "simple", "simpler"):
        assert re.search(rf"{model} \(grid \d+×\d+\)/city_\w+: \w+ " + _INTERVAL.pattern, f["evidence"])
    rows = tables["objects_finding2_enrichment"]["rows"]
    cols = tables["objects_finding2_enrichment"]["columns"]
    est, lo, hi = (cols.index(c) for c in ("enrichment", "low", "high"))
    assert {r[cols.index("object")] for r in rows if r[cols.index("role")] == "background"} <= {"sky", "road", "building"}
    for r in rows:
        if r[est] is not None:
            assert r[lo] <= r[est] + 1e-9 and r[est] <= r[hi] + 1e-9 and r[lo] >= 0.0
    cues = [r for r in rows if r[cols.index("role")] == "top cue"]
    assert cues and all(r[cols.index("verdict")] in ("holds", "does not hold", "inconclusive") for r in cues)


def test_finding4_restated_on_the_tiny_embeddings(findings_sections):
    sections, _ = findings_sections
    f4a, f4b = sections["similarity"]["findings"]
    for f in (f4a, f4b):
        assert _state(f) in ("holds", "does not hold", "inconclusive")
        assert _INTERVAL.search(f["evidence"]) and re.search(r"grid \d+×\d+", f["evidence"])
    assert "embedding_avg (avg pooling" in f4a["evidence"] and "embedding_max (max pooling" in f4a["evidence"]
    assert "paired over" in f4b["evidence"]


def test_finding1_interval_and_grids_on_the_tiny_models(findings_sections):
    sections, tables = findings_sections
    (f,) = sections["residuals"]["findings"]
    assert _state(f) in ("holds", "does not hold", "inconclusive")
    for model in ("vgg11", "resnet18", "simple", "simpler", "vgg11_retrained"):
        assert re.search(rf"\b{model} \d+×\d+", f["evidence"])  # every model's grid
    assert re.search(r"difference paired over images -?\d\.\d{3} \[-?\d\.\d{3}, -?\d\.\d{3}\]: " + _state(f),
                     f["evidence"])
    t = tables["residuals"]
    mean, lo, hi = (t["columns"].index(c) for c in ("mean AR", "95% low", "95% high"))
    assert len(t["rows"]) == 7  # 6 architecture pairs and vgg11-vgg11 retrained
    for r in t["rows"]:
        assert 0.0 <= r[lo] <= r[mean] <= r[hi] <= 1.0 and r[lo] < r[hi]

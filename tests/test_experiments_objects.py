"""Hand-computed checks of the objects and localisation experiments' helpers and of the annotations CSV."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation import annotations as an
from evaluation.experiments import localisation as loc
from evaluation.experiments import objects as ob

NAMES = {1: "sky", 2: "road", 3: "skyscraper", 4: "signboard", 5: "fence"}


# ----------------------------------------------------------------------------------- object statistics
def _two_images():
    # image 0 (class 0): top row sky (1), bottom row skyscraper (3); image 1 (class 1): sky / signboard (4)
    lm = np.array([[[1, 1, 1], [3, 3, 0]], [[1, 1, 1], [4, 4, 4]]], dtype=np.uint8)
    heat = np.array([[[0.9, 0.1, 0.1], [0.6, 0.5, 0.7]], [[0.0, 0.55, 0.6], [0.59, 0.2, 0.1]]])
    return lm, heat, np.array([0, 1])


def test_object_statistics_hand_case_theta_05_and_06():
    lm, heat, labels = _two_images()
    s = ob.object_statistics(heat, lm, labels, num_classes=2, theta=0.5, num_objects=8)
    # θ=0.5, image 0 keeps (0,0) sky, (1,0),(1,1) skyscraper, (1,2) unlabelled (ignored)
    assert s.inside[0].tolist() == [0, 1, 0, 2, 0, 0, 0, 0]
    assert s.total[0].tolist() == [0, 3, 0, 2, 0, 0, 0, 0]
    # image 1 keeps (0,1),(0,2) sky and (1,0) signboard
    assert s.inside[1].tolist() == [0, 2, 0, 0, 1, 0, 0, 0]
    assert s.total[1].tolist() == [0, 3, 0, 0, 3, 0, 0, 0]
    assert s.ratios[0, 1] == pytest.approx(1 / 3) and s.ratios[0, 3] == pytest.approx(1.0)
    assert s.ratios[1, 1] == pytest.approx(2 / 3) and s.ratios[1, 4] == pytest.approx(1 / 3)
    assert math.isnan(s.ratios[0, 4]) and math.isnan(s.ratios[0, 0])
    np.testing.assert_allclose(s.mean_pixels[0, [1, 3]], [1.0, 2.0])
    # 6-pixel images: the 100-pixel rule at 224² becomes 100·6/50176 ≈ 0.012 pixels
    assert s.selected[0, 1] and s.selected[0, 3] and not s.selected[0, 4] and not s.selected[0, 0]
    s6 = ob.object_statistics(heat, lm, labels, num_classes=2, theta=0.6, num_objects=8)
    # θ=0.6: image 0 keeps sky (0,0), skyscraper (1,0); image 1 keeps sky (0,2) only (0.59 < 0.6)
    assert s6.inside[0, [1, 3]].tolist() == [1, 1]
    assert s6.inside[1, [1, 4]].tolist() == [1, 0]
    assert s6.ratios[1, 4] == 0.0


def test_r_pc_table_rows_are_the_union_of_selections_ordered_by_value():
    r_a = np.array([[0.2, 0.9, np.nan], [0.5, np.nan, 0.1]])
    r_b = np.array([[0.3, 0.4, np.nan], [0.6, np.nan, 0.8]])
    sel_a = np.array([[True, False, False], [True, False, False]])
    sel_b = np.array([[False, True, False], [True, False, True]])
    names = {0: "sky", 1: "skyscraper", 2: "signboard"}
    t = ob.r_pc_table("t", "T", {"a": r_a, "b": r_b}, {"a": sel_a, "b": sel_b}, ["ca", "cb"], names,
                      planted={0: {1}, 1: {2}}, shared={0})
    assert t.columns == ["object", "class", "kind", "selected by", "a", "b"]
    rows = [r[:4] for r in t.rows]
    # class ca: skyscraper (best 0.9) before sky (best 0.3); class cb: signboard (0.8) before sky (0.6)
    assert rows == [["skyscraper", "ca", "planted", 1], ["sky", "ca", "shared", 1],
                    ["signboard", "cb", "planted", 1], ["sky", "cb", "shared", 2]]
    assert t.rows[0][4:] == [0.9, 0.4]


def test_mean_pixels_table_note_and_rows():
    mp = {"a": np.array([[0.0, 150.0], [10.0, 0.0]])}
    t = ob.mean_pixels_table("m", "M", mp, ["c0", "c1"], {0: "sky", 1: "earth"}, image_area=224 * 224)
    assert [r[:2] for r in t.rows] == [["earth", "c0"], ["sky", "c1"]]
    assert "100.0 pixels" in t.note


# ----------------------------------------------------------------------------------- finding 2
def test_finding2_cases_min_planted_vs_max_shared():
    # objects: 0 sky, 1 road, 2 skyscraper, 3 earth, 4 signboard
    names = {0: "sky", 1: "road", 2: "skyscraper", 3: "earth", 4: "signboard"}
    planted = {0: {2, 3}, 1: {4}}
    shared = {0, 1}
    r_m1 = np.array([[0.3, 0.2, 0.8, 0.5, np.nan],    # class 0: min planted 0.5 (earth) > max shared 0.3 (sky)
                     [0.4, 0.1, np.nan, np.nan, 0.35]])  # class 1: 0.35 (signboard) <= 0.4 (sky)
    r_m2 = np.array([[0.3, 0.6, 0.7, np.nan, np.nan],    # earth absent: min planted 0.7 > max shared 0.6 (road)
                     [np.nan, np.nan, np.nan, np.nan, 0.9]])  # no shared object present: not evaluated
    cases = ob.finding2_cases({"m1": r_m1, "m2": r_m2}, ["ca", "cb"], names, planted, shared)
    got = [(c["model"], c["class"], c["planted_object"], c["shared_object"], c["holds"]) for c in cases]
    assert got == [("m1", "ca", "earth", "sky", True), ("m1", "cb", "signboard", "sky", False),
                   ("m2", "ca", "skyscraper", "road", True), ("m2", "cb", "signboard", "", None)]
    assert cases[0]["planted_min"] == 0.5 and cases[0]["shared_max"] == 0.3


def test_object_kinds_maps_names_to_indices():
    planted, shared = ob.object_kinds(["city_a", "city_b"], NAMES, {"city_a": ["skyscraper"], "city_b": ["signboard", "fence"]})
    assert planted == {0: {3}, 1: {4, 5}}
    assert shared == {1, 2}  # sky, road (building/tree/car unknown here)


def test_agreement_table_layout():
    cur = {"threshold": np.array([0.5, 1.0]), "strict": np.array([0.25, 0.5]), "lenient": np.array([0.75, 0.5])}
    t = ob.agreement_table({("vgg11", 0.5): cur}, np.array([0.5, 1.0]))
    assert t.columns == ["model", "θ", "kind", "t=0.50", "t=1.00"]
    assert t.rows == [["vgg11", 0.5, "strict", 0.25, 0.5], ["vgg11", 0.5, "lenient", 0.75, 0.5]]


# ----------------------------------------------------------------------------------- annotations
def test_annotations_from_label_maps_prefers_planted_then_non_ubiquitous():
    lm = np.array([
        # class 0 (planted skyscraper 3): skyscraper 3 px, fence 2 px (not planted in class 0), sky 4
        [[1, 1, 1, 1], [3, 3, 3, 5], [5, 2, 2, 2]],
        # class 1 (planted signboard 4, fence 5): signboard 3 px, fence 2 px -> 2/3 >= 0.5: both
        [[1, 1, 1, 1], [4, 4, 4, 5], [5, 2, 2, 2]],
        # class 1 with no planted object visible: fallback to non-ubiquitous: skyscraper (3) only
        [[1, 1, 1, 1], [3, 3, 1, 1], [2, 2, 2, 2]],
        # only ubiquitous objects: nothing
        [[1, 1, 1, 1], [1, 1, 1, 1], [2, 2, 2, 2]],
    ], dtype=np.uint8)
    got = an.annotations_from_label_maps(lm, np.array([0, 1, 1, 1]), ["city_a", "city_b"], NAMES,
                                         {"city_a": ["skyscraper"], "city_b": ["signboard", "fence"]}, threshold=0.5)
    assert got == [("skyscraper",), ("signboard", "fence"), ("skyscraper",), ()]
    # a stricter runner-up rule drops fence (2 < 0.7·3)
    got = an.annotations_from_label_maps(lm[1:2], np.array([1]), ["city_a", "city_b"], NAMES,
                                         {"city_b": ["signboard", "fence"]}, threshold=0.7)
    assert got == [("signboard",)]
    with pytest.raises(ValueError, match="threshold"):
        an.annotations_from_label_maps(lm, np.array([0, 1, 1, 1]), ["a", "b"], NAMES, threshold=0.0)


def test_annotations_csv_roundtrip_header_comments_and_errors(tmp_path):
    p = an.write_annotations(tmp_path / "a.csv", {"city_a/000001": ("skyscraper",), "city_b/000002": ("signboard", "fence")})
    assert p.read_text().splitlines()[0] == "image_id,label,label2"
    assert an.read_annotations(p) == {"city_a/000001": ("skyscraper",), "city_b/000002": ("signboard", "fence")}
    q = tmp_path / "b.csv"
    q.write_text("# comment\nimg1, sky ,\n\nimg2,road,car\n")
    assert an.read_annotations(q) == {"img1": ("sky",), "img2": ("road", "car")}
    q.write_text("img1\n")
    with pytest.raises(ValueError, match=":1: expected"):
        an.read_annotations(q)
    q.write_text("img1,a,b,c\n")
    with pytest.raises(ValueError, match="at most two"):
        an.read_annotations(q)
    q.write_text("img1,a\nimg1,b\n")
    with pytest.raises(ValueError, match="twice"):
        an.read_annotations(q)
    with pytest.raises(ValueError, match="one or two"):
        an.write_annotations(tmp_path / "c.csv", {"x": ()})


def test_annotation_indices_drop_unknown_names():
    ann = {"a": ("sky",), "b": ("unicorn",), "c": ("road", "unicorn"), "d": ("sky", "road")}
    pos, idx, unknown = an.annotation_indices(ann, ["z", "a", "b", "c", "d"], {"sky": 1, "road": 2})
    assert pos.tolist() == [1, 3, 4]
    assert idx == [(1,), (2,), (1, 2)]
    assert unknown == ["unicorn"]


def test_write_annotations_from_ground_truth_on_an_imageset(tmp_path):
    from models.datasets.imageset import ImageSet

    lm = np.array([[[3, 3], [1, 2]], [[4, 1], [1, 2]]], dtype=np.uint8)
    ds = ImageSet(np.zeros((2, 2, 2, 3), np.uint8), np.array([0, 1]), ["city_a", "city_b"], label_maps=lm,
                  object_names=NAMES, discriminative={"city_a": ["skyscraper"], "city_b": ["signboard"]},
                  ids=["city_a/0", "city_b/0"])
    p = an.write_annotations_from_ground_truth(ds, tmp_path / "ann.csv")
    assert an.read_annotations(p) == {"city_a/0": ("skyscraper",), "city_b/0": ("signboard",)}


# ----------------------------------------------------------------------------------- localisation
def test_target_masks_use_the_true_class_planted_objects():
    lm = np.array([[[3, 4], [1, 3]], [[3, 4], [5, 1]]], dtype=np.uint8)
    t = loc.target_masks(lm, np.array([0, 1]), ["city_a", "city_b"], NAMES,
                         {"city_a": ["skyscraper"], "city_b": ["signboard", "fence"]})
    assert t[0].tolist() == [[True, False], [False, True]]
    assert t[1].tolist() == [[False, True], [True, False]]


def test_localisation_scores_hand_case():
    maps = np.array([
        [[1.0, 0.0], [0.5, 0.5]],   # target (0,0): mass 1/2, area 1/4, max on target
        [[0.2, 0.8], [0.0, 0.0]],   # target (0,0),(1,0): mass 0.2, area 1/2, max off target
        [[0.3, 0.3], [0.3, 0.3]],   # empty target: left out
    ])
    targets = np.array([[[1, 0], [0, 0]], [[1, 0], [1, 0]], [[0, 0], [0, 0]]], dtype=bool)
    s = loc.localisation_scores(maps, targets)
    assert s["images"] == 2 and s["left_out"] == 1 and s["flat"] == 0
    assert s["mass_share"] == pytest.approx((0.5 + 0.2) / 2)
    assert s["area_share"] == pytest.approx((0.25 + 0.5) / 2)
    assert s["ratio"] == pytest.approx(0.35 / 0.375)
    assert s["pointing"] == pytest.approx(0.5)
    assert s["above_chance"] == pytest.approx(0.5)  # 0.5 > 0.25 yes; 0.2 > 0.5 no
    empty = loc.localisation_scores(maps[2:], targets[2:])
    assert empty["images"] == 0 and empty["left_out"] == 1 and math.isnan(empty["mass_share"])
    # a flat map (normalised to zeros) is left out of mass share and pointing, not of the area share
    flat = loc.localisation_scores(np.concatenate([maps[:1], np.zeros((1, 2, 2))]), targets[:2])
    assert flat["images"] == 2 and flat["flat"] == 1
    assert flat["mass_share"] == pytest.approx(0.5) and flat["pointing"] == 1.0
    assert flat["area_share"] == pytest.approx(0.375)
    only_flat = loc.localisation_scores(np.zeros((1, 2, 2)), targets[:1])
    assert only_flat["flat"] == 1 and math.isnan(only_flat["pointing"]) and math.isnan(only_flat["ratio"])


def test_localisation_table_and_methods():
    s = {"images": 2, "left_out": 1, "flat": 0, "mass_share": 0.5, "area_share": 0.25, "ratio": 2.0, "pointing": 1.0,
         "above_chance": 1.0}
    t = loc.localisation_table({("Grad-CAM", "vgg11"): s})
    assert t.rows == [["Grad-CAM", "vgg11", 2, 1, 0, 0.5, 0.25, 2.0, 1.0, 1.0]]
    methods = loc.localisation_methods((96, 96, 3), seed=3)
    assert [m[1] for m in methods] == ["gradcam", "gradcam_plus_plus", "layercam", "saliency", "excitation_backprop",
                                       "occlusion", "perturbation_mask", "scorecam"]
    assert methods[6][2] == {"iterations": 100, "seed": 3}
    assert loc.localisation_methods((224, 224, 3), seed=0)[6][2]["iterations"] == 300

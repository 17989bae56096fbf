"""Visual summaries (seed 004): regions, descriptors, clustering and the experiment's helpers.

Synthetic masks and activations only (no TensorFlow, no service): 64×64 images with an 8×8
target layer (8-pixel cells), so every planted blob covers whole cells.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from evaluation import summaries as su

H = 64
CELL = 8
K = 32


def _onehot_support(rng, channels):
    f = np.zeros(K)
    f[list(channels)] = 0.5 + rng.random(len(channels))
    return f


def planted(n=20, seed=0, incoherent=False, duplicates=0, jitter=True):
    """``n`` images with blob A (cells 1-2 × 1-2, features on channels 0-3) and blob B (cells 5-6 ×
    4-6, channels 4-7), both with noise; optionally blob C (cells 1-2 × 5-6) in images 0-10: a
    one-hot on channel 8 + i in image i < 10 and, in image 10, a "hub" spread evenly over channels
    8-17. The hub is similar to every C region (cos 1/√10, same place) but the C regions are not
    similar to each other (cos 0): a star-shaped, incoherent cluster. In the first ``duplicates``
    images a second, smaller A-like blob (cell 4 × 1, A not jittered there so that the two stay
    apart) with noisier A features."""
    rng = np.random.default_rng(seed)
    fa = _onehot_support(rng, range(0, 4))
    fb = _onehot_support(rng, range(4, 8))
    h = H // CELL
    heat = (rng.random((n, H, H)) * 0.2).astype(np.float32)
    A = rng.random((n, h, h, K)) * 0.02
    labels = np.full((n, H, H), 3, np.uint8)  # sky everywhere
    for i in range(n):
        dy, dx = (rng.integers(0, 2), rng.integers(0, 2)) if jitter and i >= duplicates else (0, 0)
        blobs = [((1 + dy, 3 + dy), (1 + dx, 3 + dx), fa, 10), ((5, 7), (4, 7), fb, 20)]
        if incoherent and i <= 10:
            c = np.zeros(K)
            c[8 + i if i < 10 else slice(8, 18)] = 1.0
            blobs.append(((1, 3), (5, 7), c, 30))
        if i < duplicates:
            blobs.append(((4, 5), (1, 2), fa, 10))
        for (r0, r1), (c0, c1), f, lab in blobs:
            heat[i, r0 * CELL:r1 * CELL, c0 * CELL:c1 * CELL] = 0.8 + 0.2 * rng.random(((r1 - r0) * CELL, (c1 - c0) * CELL))
            noise = 0.05 if lab != 10 or (r0, c0) != (4, 1) else 0.15
            A[i, r0:r1, c0:c1] = np.maximum(f * (1 + noise * rng.standard_normal((r1 - r0, c1 - c0, K))), 0)
            labels[i, r0 * CELL:r1 * CELL, c0 * CELL:c1 * CELL] = lab
    return heat, A, labels


NAMES = {3: "sky", 10: "skyscraper", 20: "fence", 30: "car"}


# ----------------------------------------------------------------------------------------- components
def test_label_components_hand_case_4_vs_8_connectivity():
    b = np.array([
        [1, 1, 0, 0, 0],
        [0, 1, 0, 0, 1],
        [0, 0, 1, 0, 1],
        [1, 0, 0, 0, 0],
    ], bool)
    lab8, n8 = su.label_components(b, 8)
    lab4, n4 = su.label_components(b, 4)
    # 8-connectivity: {(0,0),(0,1),(1,1),(2,2)} joined through the corner (1,1)-(2,2); {(1,4),(2,4)}; {(3,0)}
    assert n8 == 3
    assert lab8[0, 0] == lab8[0, 1] == lab8[1, 1] == lab8[2, 2] == 1
    assert lab8[1, 4] == lab8[2, 4] == 2 and lab8[3, 0] == 3
    # 4-connectivity splits (2,2) off
    assert n4 == 4
    assert lab4[0, 0] == lab4[1, 1] != lab4[2, 2]
    assert (lab4 > 0).sum() == b.sum() == (lab8 > 0).sum()
    with pytest.raises(ValueError):
        su.label_components(b, 6)


def test_extract_regions_components_area_boxes_and_order():
    m = np.zeros((20, 20), np.float32)
    m[2:6, 3:8] = 0.9      # 20 px, mass 18
    m[10:12, 10:11] = 0.7  # 2 px -> below min area (1% of 400 = 4 px)
    m[14:19, 14:19] = 0.6  # 25 px, mass 15
    m[0, 19] = 0.4         # below threshold
    regs = su.extract_regions(m, threshold=0.5, min_area_frac=0.01, max_regions=5)
    assert [r.box for r in regs] == [(2, 3, 6, 8), (14, 14, 19, 19)]  # by importance mass
    assert [r.area for r in regs] == [20, 25]
    assert regs[0].score == pytest.approx(18.0, rel=1e-5) and regs[1].score == pytest.approx(15.0, rel=1e-5)
    assert regs[0].mask.sum() == 20 and regs[0].image == 0 and regs[0].image_size == (20, 20)
    # max_regions keeps the most important
    assert [r.box for r in su.extract_regions(m, 0.5, 0.01, max_regions=1)] == [(2, 3, 6, 8)]
    # min_area_frac 0 keeps the 2-pixel one too
    assert len(su.extract_regions(m, 0.5, 0.0)) == 3
    # batch: image indices
    regs2 = su.extract_regions(np.stack([m, np.zeros_like(m), m]), 0.5, 0.01)
    assert [r.image for r in regs2] == [0, 0, 2, 2]


def test_nms_drops_overlapping_lower_mass_region():
    def box(y0, x0, y1, x1, score, image=0):
        return su.Region(image, (y0, x0, y1, x1), None, score, (y1 - y0) * (x1 - x0), "box", (10, 10))

    a = box(0, 0, 4, 4, 10.0)       # 16 px
    b = box(0, 1, 4, 5, 9.0)        # IoU with a = 12 / 20 = 0.6
    c = box(0, 2, 4, 6, 8.0)        # IoU with a = 8 / 24 = 1/3
    d = box(0, 0, 4, 4, 1.0, image=1)  # other image: never suppressed by a
    assert su.region_iou(a, b) == pytest.approx(0.6)
    assert su.region_iou(a, c) == pytest.approx(1 / 3)
    assert su.region_iou(a, d) == 0.0
    assert su.nms([c, b, a, d], 0.5) == [a, c, d]
    assert su.nms([c, b, a, d], 0.3) == [a, d]
    # footprint IoU for components (not the boxes): an L shape and its bounding box overlap 5/9
    L = np.zeros((10, 10), bool)
    L[0:3, 0] = True
    L[2, 0:3] = True
    comp = su.Region(0, (0, 0, 3, 3), L, 5.0, 5, "component", (10, 10))
    full = box(0, 0, 3, 3, 4.0)
    assert su.region_iou(comp, full) == pytest.approx(5 / 9)


def test_box_proposals_lie_mostly_inside_the_mask():
    m = np.zeros((32, 32), np.float32)
    m[8:24, 8:24] = 1.0
    regs = su.extract_regions(m, 0.5, 0.0, max_regions=50, proposals="boxes", box_scales=(0.25, 0.5), box_fill=0.7, nms_iou=0.99)
    assert regs and all(r.kind == "box" for r in regs)
    for r in regs:
        y0, x0, y1, x1 = r.box
        assert (m[y0:y1, x0:x1] >= 0.5).mean() >= 0.7
    assert any(r.box == (8, 8, 24, 24) for r in regs)  # the 16-pixel box on the square
    both = su.extract_regions(m, 0.5, 0.0, max_regions=5, proposals="both")
    # the component and the exactly coinciding 16-px box: NMS keeps the component (same mass, components first)
    assert both[0].kind == "component" and both[0].box == (8, 8, 24, 24)
    assert not any(r.kind == "box" and r.box == (8, 8, 24, 24) for r in both)


# ----------------------------------------------------------------------------------------- descriptors
def test_region_descriptors_area_weighted_pooling_and_geometry():
    A = np.zeros((1, 2, 2, 2))
    A[0, 0, 0] = [1.0, 0.0]
    A[0, 0, 1] = [0.0, 1.0]
    A[0, 1, :] = [5.0, 5.0]
    fp = np.zeros((4, 4), bool)
    fp[0:2, 0:3] = True  # 4 px in cell (0,0), 2 px in cell (0,1)
    r = su.Region(0, (0, 0, 2, 3), fp, 1.0, 6, "component", (4, 4))
    d = su.region_descriptors([r], A, (4, 4))
    np.testing.assert_allclose(d.pooled[0], [4 / 6, 2 / 6])
    np.testing.assert_allclose(d.features[0], np.array([2.0, 1.0]) / np.sqrt(5))
    np.testing.assert_allclose(d.geometry[0], [1 / 4, 1.5 / 4, np.sqrt(6 / 16), np.log2(3 / 2) / 4])
    # non-integer ratio (5 px onto 2 cells): weights still sum to the region's area
    w = su._area_matrix(2, 5)
    np.testing.assert_allclose(w.sum(0), 1.0)
    np.testing.assert_allclose(w[0], [1, 1, 0.5, 0, 0])
    # centring
    dc = su.region_descriptors([r], A, (4, 4), center=np.array([4 / 6, 0.0]))
    np.testing.assert_allclose(dc.features[0], [0.0, 1.0], atol=1e-12)


def test_region_similarity_formula():
    fa = np.array([[1.0, 0.0], [0.6, 0.8]])
    ga = np.array([[0.5, 0.5, 0.2, 0.0], [0.5, 0.75, 0.2, 0.0]])
    S = su.region_similarity((fa, ga), (fa, ga), feature_weight=0.6, position_weight=0.4, sigma=0.25)
    np.testing.assert_allclose(np.diag(S), 1.0)
    np.testing.assert_allclose(S[0, 1], 0.6 * 0.6 + 0.4 * np.exp(-(0.25**2) / 0.25**2))
    np.testing.assert_allclose(S, S.T)


# ----------------------------------------------------------------------------------------- summaries
def test_planted_two_clusters_are_recovered():
    heat, A, labels = planted()
    out = su.summarize_class(heat, A, labels, NAMES, seed=0, class_name="city_a")
    assert len(out) == 2
    for s in out:
        imgs = [r.image for r in s.members]
        assert sorted(imgs) == list(range(20))  # one region per image, every image
        assert s.regularity == pytest.approx(1.0) and s.size == 20
        assert s.coherence > 0.8 and s.class_name == "city_a"
        assert s.mean_mask.shape == (H, H) and s.mean_mask.max() == pytest.approx(1.0)
    assert {s.majority_object for s in out} == {"skyscraper", "fence"}
    for s in out:
        assert s.object_shares[s.majority_object] > 0.9
        assert set(s.member_objects) == {s.majority_object}
    # deterministic for a seed
    again = su.summarize_class(heat, A, labels, NAMES, seed=0)
    assert [[r.box for r in s.members] for s in out] == [[r.box for r in s.members] for s in again]


def test_coherence_filter_drops_a_planted_incoherent_cluster():
    heat, A, labels = planted(incoherent=True)
    loose = su.summarize_class(heat, A, labels, NAMES, seed=0, coherence_threshold=0.3)
    strict = su.summarize_class(heat, A, labels, NAMES, seed=0, coherence_threshold=0.5)
    cars = [s for s in loose if s.majority_object == "car"]
    assert len(cars) == 1 and cars[0].size == 11  # C is clustered around its hub ...
    # ... but incoherent: 45 pairs at 0.4 (position only), 10 at 0.6/√10 + 0.4
    assert cars[0].coherence == pytest.approx((45 * 0.4 + 10 * (0.6 / np.sqrt(10) + 0.4)) / 55, abs=0.01)
    assert sorted(s.majority_object for s in strict) == ["fence", "skyscraper"]
    assert all(s.coherence > 0.8 for s in strict)


def test_cluster_coherence_hand_case():
    S = np.array([[1.0, 0.2, 0.4], [0.2, 1.0, 0.6], [0.4, 0.6, 1.0]])
    assert su.cluster_coherence(S, [0, 1, 2]) == pytest.approx((0.2 + 0.4 + 0.6) / 3)
    assert su.cluster_coherence(S, [1]) == 1.0


def test_one_region_per_image_keeps_the_member_most_similar_to_the_exemplar():
    # regions 0..5 in images [0, 0, 1, 1, 1, 2]; exemplar 2 (image 1)
    images = [0, 0, 1, 1, 1, 2]
    S = np.full((6, 6), 0.1)
    S[2] = [0.3, 0.7, 1.0, 0.9, 0.95, 0.2]
    kept = su.one_region_per_image([0, 1, 2, 3, 4, 5], 2, images, S)
    assert kept == [1, 2, 5]  # image 0: region 1 (0.7 > 0.3); image 1: the exemplar itself; image 2: 5
    S[2, 0] = 0.7  # tie: the lower index
    assert su.one_region_per_image([1, 0, 5, 2], 2, images, S) == [0, 2, 5]


def test_at_most_one_region_per_image_per_cluster():
    heat, A, labels = planted(duplicates=8)
    for sigma in (0.25, 1.0):
        out = su.summarize_class(heat, A, labels, NAMES, seed=0, sigma=sigma)
        assert out
        for s in out:
            imgs = [r.image for r in s.members]
            assert len(imgs) == len(set(imgs)) and s.regularity == pytest.approx(len(imgs) / 20)


def test_crops_and_json_round_trip_and_assignment():
    heat, A, labels = planted(n=12)
    images = np.random.default_rng(1).integers(0, 256, (12, H, H, 3), dtype=np.uint8)
    out = su.summarize_class(heat, A, labels, NAMES, seed=3, images=images, image_ids=[f"im{i}" for i in range(12)])
    assert len(out) == 2
    for s in out:
        assert len(s.crops) == s.size
        y0, x0, y1, x1 = s.members[0].box
        assert s.crops[0].shape == (y1 - y0, x1 - x0, 3) and s.crops[0].dtype == np.uint8
        assert s.image_ids[0].startswith("im")
    data = json.loads(json.dumps(su.summaries_to_json(out)))
    back = su.summaries_from_json(data)
    assert [b.regularity for b in back] == [s.regularity for s in out]
    np.testing.assert_allclose(back[0].exemplar_features, out[0].exemplar_features)
    # new images: their A and B regions go to the matching summaries, a region elsewhere to none
    nh, nA, _ = planted(n=3, seed=7)
    fa_sum = next(s.index for s in back if s.majority_object == "skyscraper")
    fb_sum = next(s.index for s in back if s.majority_object == "fence")
    regs = su.extract_regions(nh)
    regs.append(su.Region(0, (56, 0, 64, 8), None, 1.0, 64, "box", (H, H)))  # background corner
    assigned, score = su.assign_regions(regs, nA, (H, H), back, threshold=0.6)
    for r, a in zip(regs[:-1], assigned[:-1]):
        assert a == (fa_sum if r.box[0] < 4 * CELL else fb_sum)
    assert assigned[-1] == -1 and score[-1] < 0.6
    # one region per image and summary: a duplicate of a region loses
    dup = regs[0]
    assigned2, _ = su.assign_regions([dup, dup], nA, (H, H), back, threshold=0.6)
    assert sorted(assigned2.tolist()) == [-1, fa_sum if dup.box[0] < 4 * CELL else fb_sum]


def test_no_regions_gives_no_summaries():
    out = su.summarize_class(np.zeros((3, 16, 16)), np.zeros((3, 2, 2, 4)), seed=0)
    assert out == []


# ----------------------------------------------------------------------------------------- experiment helpers
from evaluation.experiments import summaries as ex  # noqa: E402


def _summary(object_pixels, images, regularity=1.0, coherence=0.8, n=4):
    members = [su.Region(i, (0, 0, 2, 2), None, 1.0, 4, "box", (8, 8)) for i in images]
    return su.Summary(index=0, members=members, image_ids=list(images), exemplar=0,
                      similarity=np.ones(len(images)), coherence=coherence, regularity=regularity,
                      n_images=n, mean_mask=None, object_pixels=dict(object_pixels))


def test_planted_pixel_share_and_majority_rule():
    px = {"skyscraper": 30, "earth": 10, "sky": 60}
    assert ex.planted_pixel_share(px, ["skyscraper", "earth"]) == pytest.approx(0.4)
    assert not ex.falls_on_planted(px, ["skyscraper", "earth"])
    assert ex.planted_pixel_share(px, ["sky"]) == pytest.approx(0.6) and ex.falls_on_planted(px, ["sky"])
    assert not ex.falls_on_planted({"a": 5, "b": 5}, ["a"])  # exactly half is not a majority
    assert np.isnan(ex.planted_pixel_share({}, ["a"])) and not ex.falls_on_planted({}, ["a"])


def test_planted_summary_share_hand_case():
    per_class = {
        "city_a": [{"skyscraper": 6, "sky": 4}, {"sky": 10}],  # 1 of 2 on planted
        "city_b": [{"fence": 1}],                               # 1 of 1
        "city_c": [{"skyscraper": 9}],                          # no planted objects known: not counted
    }
    disc = {"city_a": ["skyscraper", "earth"], "city_b": ["fence"]}
    assert ex.planted_summary_share(per_class, disc) == (2, 3, pytest.approx(2 / 3))
    on, total, share = ex.planted_summary_share({"city_a": []}, disc)
    assert (on, total) == (0, 0) and np.isnan(share)


def test_coverage_architecture_rows_and_finding():
    s1 = _summary({"skyscraper": 8, "sky": 2}, [0, 1, 2], regularity=0.75, coherence=0.9)
    s2 = _summary({"sky": 10}, [1, 3], regularity=0.5, coherence=0.7)
    s3 = _summary({"fence": 3, "road": 1}, [0, 1], regularity=1.0, coherence=0.6, n=2)
    assert ex.class_coverage([s1, s2], 4) == pytest.approx(1.0)
    assert ex.class_coverage([s2], 4) == pytest.approx(0.5)
    per_model = {"vgg11": {"city_a": [s1, s2], "city_b": [s3]}, "simple": {"city_a": [], "city_b": []}}
    images = {"vgg11": {"city_a": 4, "city_b": 2}, "simple": {"city_a": 4, "city_b": 0}}
    disc = {"city_a": ["skyscraper"], "city_b": ["fence"]}
    rows = {r["model"]: r for r in ex.architecture_rows(per_model, images, disc)}
    v = rows["vgg11"]
    assert v["summaries"] == 3 and v["per class"] == pytest.approx(1.5)
    assert v["mean regularity"] == pytest.approx((0.75 + 0.5 + 1.0) / 3)
    assert v["coverage"] == pytest.approx((1.0 + 1.0) / 2)
    assert v["on planted"] == pytest.approx(2 / 3) and v["images"] == 6
    s = rows["simple"]  # city_b had no images: only city_a counts
    assert s["summaries"] == 0 and s["per class"] == 0.0 and s["coverage"] == 0.0 and s["images"] == 4
    f = ex.summaries_finding(per_model, disc, {"city_a": 0.1, "city_b": 0.05})
    assert f.holds is True and "2 of 3 summaries" in f.evidence and "chance level" in f.evidence
    assert ex.summaries_finding({"m": {"city_a": [s2]}}, disc).holds is False
    assert ex.summaries_finding({"m": {"city_a": []}}, disc).holds is None
    assert ex.summaries_finding(per_model, {}).holds is None


def test_figure_rows_put_the_exemplar_first_and_the_mean_mask_last():
    s = _summary({"sky": 1}, [0, 1, 2])
    s.exemplar = 1
    s.similarity = np.array([0.5, 1.0, 0.7])
    s.crops = [np.full((2, 2, 3), v, np.uint8) for v in (10, 20, 30)]
    s.mean_mask = np.zeros((8, 8), np.float32)
    rows, titles = ex.summary_figure_rows([s])
    assert [int(c[0, 0, 0]) for c in rows[0][:3]] == [20, 30, 10] and rows[0][3].shape == (8, 8)
    assert titles[0].startswith("#0 sky")


# ----------------------------------------------------------------------------------------- experiment run
class _Info:
    def __init__(self, name, methods=None):
        self.name, self.version, self.kind = name, 1, "classifier"
        self.input_size, self.card, self.target_layer = (H, H, 3), {}, "t"
        self.methods = methods or ["gradcam", "perturbation_mask"]


class _Result:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class FakeClient:
    """Masks and activations read off the images: channel 0 marks blob A, channel 1 blob B, the
    class is pixel (0, 0, 2) > 127; model ``bad`` predicts class 0 for everything."""

    def __init__(self):
        self.fa = np.zeros(K)
        self.fa[:4] = 1.0
        self.fb = np.zeros(K)
        self.fb[4:8] = 1.0

    def list_models(self):
        return [_Info("good"), _Info("bad"), _Info("good_retrained"), _Info("nomask", ["gradcam"])]

    def explain(self, model, method, images, **params):
        assert method == "perturbation_mask" and params["iterations"] == 100
        raw = ((images[..., 0] > 127) | (images[..., 1] > 127)).astype(np.float32) * 0.9
        cls = (images[:, 0, 0, 2] > 127).astype(np.int32) if model == "good" else np.zeros(len(images), np.int32)
        return _Result(heatmap=raw / 0.9, heatmap_lowres=None, raw=raw, probabilities=np.eye(2)[cls], class_index=cls)

    def features(self, model, images):
        cells = images.reshape(len(images), H // CELL, CELL, H // CELL, CELL, 3).mean((2, 4)) / 255.0
        A = cells[..., 0:1] * self.fa + cells[..., 1:2] * self.fb + 0.01
        return A.astype(np.float32), np.zeros((len(images), 2), np.float32)


def _fake_data(n_per_class=6, seed=0):
    from types import SimpleNamespace

    rng = np.random.default_rng(seed)
    imgs, labs, maps = [], [], []
    for c in (0, 1):
        for _ in range(n_per_class):
            im = np.zeros((H, H, 3), np.uint8)
            lm = np.full((H, H), 3, np.uint8)  # sky
            im[0, 0, 2] = 255 * c
            dx = int(rng.integers(0, 2)) * CELL
            if c == 0:  # A on the planted skyscraper, B on the shared sky
                im[8:24, 8 + dx:24 + dx, 0] = 255
                lm[8:24, 8 + dx:24 + dx] = 10
                im[40:56, 32:56, 1] = 255
            else:  # city_b: only A, on its planted fence
                im[40:56, 8 + dx:24 + dx, 0] = 255
                lm[40:56, 8 + dx:24 + dx] = 20
            imgs.append(im)
            labs.append(c)
            maps.append(lm)
    return SimpleNamespace(images=np.stack(imgs), labels=np.array(labs), class_names=["city_a", "city_b"],
                           label_maps=np.stack(maps), object_names=NAMES,
                           discriminative={"city_a": ["skyscraper"], "city_b": ["fence"]},
                           ids=[f"im{i:03d}" for i in range(len(imgs))])


def test_experiment_runs_on_a_fake_service(tmp_path):
    from evaluation.pipeline import Context, EvalConfig

    ctx = Context(EvalConfig(out=tmp_path, ccg_images_per_class=3, progress=False), FakeClient(), _fake_data())
    section = ex.run(ctx)
    table = section.tables[0]
    recs = table.records()
    good = [r for r in recs if r["model"] == "good"]
    # good: city_a -> skyscraper (planted) and sky (shared); city_b -> fence (planted)
    assert sorted((r["class"], r["majority object"], r["on planted"]) for r in good) == [
        ("city_a", "sky", "no"), ("city_a", "skyscraper", "yes"), ("city_b", "fence", "yes")]
    assert all(r["regularity"] == pytest.approx(1.0) and r["images"] == 6 for r in good)
    # the pointing game: the skyscraper and fence summaries' peaks all hit, the sky one's miss
    assert sorted((r["majority object"], r["pointing hits"]) for r in good) == [
        ("fence", 1.0), ("sky", 0.0), ("skyscraper", 1.0)]
    # bad: predicts city_a for everything -> city_a as good's, city_b not summarised
    bad = [r for r in recs if r["model"] == "bad"]
    assert sorted(r["class"] for r in bad) == ["city_a", "city_a"]
    assert "bad city_b: 0 correctly classified" in table.note
    assert "no perturbation_mask for: nomask" in table.note
    arch = {r["model"]: r for r in section.tables[1].records()}
    assert set(arch) == {"good", "bad"}  # retrained copies and models without the method are left out
    assert arch["good"]["summaries"] == 3 and arch["bad"]["summaries"] == 2
    (f,) = section.findings
    assert f.holds is True and "3 of 5 summaries" in f.evidence and "pointing game" in f.evidence
    assert "by the stricter pixel rule" in f.evidence and "3 of 5" in f.evidence.split("stricter")[1]
    # figures: one per (model, class) with summaries, and the bar chart
    assert len(section.figures) == 4 and all((tmp_path / p).exists() for p, _ in section.figures)
    # the JSON per model, reusable with assign_regions
    data = json.loads((tmp_path / "summaries" / "good.json").read_text())
    assert data["params"] == {"iterations": 100, "seed": 0, "class_index": -1, "mask_scale": 2, **ex.MASK_PARAMS}
    assert data["importance"] == "raw"
    assert data["classes"]["city_b"]["summaries"][0]["pointing_hits"] == [True] * 6
    back = su.summaries_from_json(data["classes"]["city_b"]["summaries"])
    assert len(back) == 1 and back[0].members[0].image_size == (H, H)
    assert back[0].image_ids[0].startswith("im")
    assert ctx.results["summaries"]["good"] == {"city_a": 2, "city_b": 1}


def test_min_regularity_drops_parts_few_images_use():
    heat, A, labels = planted(n=12)
    heat[4:, 5 * CELL:7 * CELL, 4 * CELL:7 * CELL] = 0.1  # blob B only in images 0-3 (a third)
    both = su.summarize_class(heat, A, labels, NAMES, seed=0, min_regularity=1 / 3)
    assert sorted((s.majority_object, s.size) for s in both) == [("fence", 4), ("skyscraper", 12)]
    only_a = su.summarize_class(heat, A, labels, NAMES, seed=0, min_regularity=0.5)
    assert [(s.majority_object, s.size) for s in only_a] == [("skyscraper", 12)]
    with pytest.raises(ValueError, match="min_regularity 1.5 must lie in"):
        su.summarize_class(heat, A, labels, NAMES, seed=0, min_regularity=1.5)


def test_pointing_hits_take_the_peak_inside_each_member_region():
    assert ex.pointing_tolerance((224, 224)) == pytest.approx(15.0)
    assert ex.pointing_tolerance((128, 96)) == pytest.approx(15.0 * 96 / 224)
    assert ex.mask_scale_for((224, 224, 3)) == 8 and ex.mask_scale_for((128, 128, 3)) == 5
    assert ex.mask_scale_for((16, 16, 3)) == 1 and ex.mask_scale_for(None) == 8
    # image 0: a saturated plateau (member 1) and, outside it, a higher spot far from the target
    heat = np.zeros((2, 20, 20), np.float32)
    heat[0, 2:9, 4:15] = 0.8
    heat[0, 15, 15] = 1.0
    heat[1, 10:14, 2:6] = 1.0
    planted_px = np.zeros((2, 20, 20), bool)
    planted_px[0, 5, 12] = True  # 3 px from the plateau's centre (5, 9)
    planted_px[1, 0, 19] = True  # far from image 1's plateau
    fp0 = heat[0] == 0.8
    fp1 = heat[1] == 1.0
    s = _summary({"sky": 1}, [0, 1])
    s.members = [su.Region(0, (2, 4, 9, 15), fp0, 1.0, int(fp0.sum()), "component", (20, 20)),
                 su.Region(1, (10, 2, 14, 6), fp1, 1.0, int(fp1.sum()), "component", (20, 20))]
    assert ex.pointing_hits(s, heat, planted_px, 3.0) == [True, False]  # the spot at (15, 15) is ignored
    assert ex.pointing_hits(s, heat, planted_px, 2.9) == [False, False]
    s.members = []
    assert ex.pointing_hits(s, heat, planted_px, 3.0) == []
    assert ex.falls_on_by_pointing([True, True, False]) and not ex.falls_on_by_pointing([True, False])
    assert not ex.falls_on_by_pointing([])

"""Tests of models.datasets: synthetic cities and landmarks, the split, the folder loader."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.datasets import (CitiesConfig, CityStyle, ImageFolder, ImageSet, load_image_folder,
                             make_cities, make_landmarks, split_indices)
from models.datasets.ade20k import INDEX_TO_NAME, NAME_TO_INDEX, index_of

N_STAT = 400  # images per class for the statistical tests
SIZE_STAT = 32


def _present(label_maps: np.ndarray, name: str) -> np.ndarray:
    """(N,) bool: the image holds at least one pixel of object ``name``."""
    return (label_maps == NAME_TO_INDEX[name]).any(axis=(1, 2))


def _share(label_maps: np.ndarray, name: str) -> np.ndarray:
    """(N,) fraction of each image's pixels labelled ``name``."""
    return (label_maps == NAME_TO_INDEX[name]).mean(axis=(1, 2))


def _per_class(data: ImageSet, k: int) -> np.ndarray:
    return data.label_maps[data.labels == k]


@pytest.fixture(scope="module")
def cities() -> ImageSet:
    return make_cities(N_STAT, SIZE_STAT, seed=11)


# ---------------------------------------------------------------------------------------------
# ADE20K table
# ---------------------------------------------------------------------------------------------


def test_ade20k_indices_match_scene_parsing_150():
    expected = {"building": 2, "sky": 3, "tree": 5, "road": 7, "grass": 10, "sidewalk": 12,
                "person": 13, "earth": 14, "mountain": 17, "plant": 18, "car": 21, "fence": 33,
                "signboard": 44, "skyscraper": 49, "tower": 85, "awning": 87, "streetlight": 88,
                "pole": 94}
    for name, index in expected.items():
        assert NAME_TO_INDEX[name] == index
        assert INDEX_TO_NAME[index] == name
    with pytest.raises(ValueError, match=r"'skyscrapper'.*skyscraper"):
        index_of("skyscrapper")


# ---------------------------------------------------------------------------------------------
# Cities: determinism, labelling, sizes
# ---------------------------------------------------------------------------------------------


def test_cities_deterministic_and_seed_dependent():
    a = make_cities(6, 24, seed=3)
    b = make_cities(6, 24, seed=3)
    c = make_cities(6, 24, seed=4)
    assert a.images.tobytes() == b.images.tobytes()
    assert a.label_maps.tobytes() == b.label_maps.tobytes()
    assert a.ids == b.ids == [f"city_a/{i:06d}" for i in range(6)] + [
        f"city_b/{i:06d}" for i in range(6)]
    assert not np.array_equal(a.images, c.images)
    assert not np.array_equal(a.label_maps, c.label_maps)
    # an image depends only on (seed, class, position): a smaller set is a prefix of a larger one
    big = make_cities(40, 24, seed=3)
    assert np.array_equal(big.images[big.labels == 1][:6], a.images[a.labels == 1])


def test_cities_every_pixel_labelled_with_declared_objects(cities):
    assert cities.images.shape == (2 * N_STAT, SIZE_STAT, SIZE_STAT, 3)
    assert cities.images.dtype == np.uint8 and cities.label_maps.dtype == np.uint8
    assert cities.label_maps.min() > 0
    assert set(np.unique(cities.label_maps)) <= set(cities.object_names)
    assert cities.class_names == ["city_a", "city_b"]
    assert np.array_equal(cities.labels, np.repeat([0, 1], N_STAT))
    assert cities.discriminative == {"city_a": ["skyscraper", "earth"],
                                     "city_b": ["signboard", "fence", "plant"]}
    # images are not flat: sky is brighter than road on average in daylight scenes
    sky = cities.label_maps == NAME_TO_INDEX["sky"]
    road = cities.label_maps == NAME_TO_INDEX["road"]
    assert cities.images[sky].mean() > cities.images[road].mean() + 20


@pytest.mark.parametrize("size", [16, 48, 100])
def test_cities_any_size(size):
    data = make_cities(2, size, seed=0)
    assert data.images.shape == (4, size, size, 3)
    assert data.label_maps.min() > 0


@pytest.mark.parametrize("bad", [15, 0, -3, 2.5])
def test_cities_bad_size_names_value(bad):
    with pytest.raises(ValueError, match=f"image_size.*{bad}"):
        make_cities(2, bad)


def test_cities_bad_count_and_seed_name_value():
    with pytest.raises(ValueError, match="n_per_class.*0"):
        make_cities(0, 32)
    with pytest.raises(ValueError, match="seed.*-1"):
        make_cities(2, 32, seed=-1)


# ---------------------------------------------------------------------------------------------
# Cities: planted objects
# ---------------------------------------------------------------------------------------------


def _expected_rates(planted: dict[str, float], ensure: bool) -> dict[str, float]:
    """P(object j present) = p_j + [ensure] * prod_k(1 - p_k) / K (top-up chooses uniformly)."""
    none = math.prod(1.0 - p for p in planted.values())
    return {name: p + (none / len(planted) if ensure else 0.0) for name, p in planted.items()}


def _within(observed: float, expected: float, n: int, k: float = 4.0) -> bool:
    se = math.sqrt(max(expected * (1 - expected), 1e-12) / n)
    return abs(observed - expected) <= k * se + 1e-12


def test_planted_rates_match_configuration(cities):
    config = CitiesConfig()
    for k, city in enumerate(config.cities):
        maps = _per_class(cities, k)
        expected = _expected_rates(dict(city.planted), config.ensure_discriminative)
        for name, rate in expected.items():
            observed = _present(maps, name).mean()
            assert _within(observed, rate, N_STAT), (city.name, name, observed, rate)
        # every image holds at least one of its city's planted objects
        anyone = np.zeros(len(maps), bool)
        for name in city.planted:
            anyone |= _present(maps, name)
        assert anyone.all()


def test_planted_objects_of_one_city_never_appear_in_another(cities):
    config = CitiesConfig()
    for k, city in enumerate(config.cities):
        maps = _per_class(cities, k)
        for other in config.cities:
            if other.name == city.name:
                continue
            for name in other.planted:
                assert not _present(maps, name).any(), (name, city.name)


def test_rates_without_top_up():
    planted = {"skyscraper": 0.3, "earth": 0.2}
    config = CitiesConfig(cities=(CityStyle("x", planted), CityStyle("y", {"fence": 0.5})),
                          ensure_discriminative=False)
    data = make_cities(N_STAT, SIZE_STAT, seed=5, config=config)
    maps = _per_class(data, 0)
    for name, p in planted.items():
        assert _within(_present(maps, name).mean(), p, N_STAT)
    # with low rates and no top-up some images hold none of the planted objects
    assert (~(_present(maps, "skyscraper") | _present(maps, "earth"))).any()


# ---------------------------------------------------------------------------------------------
# Cities: shared objects have the same statistics in every city
# ---------------------------------------------------------------------------------------------

SHARED_CHECKED = ("sky", "building", "road", "tree", "car")


def test_shared_presence_rates_equal_configuration_in_every_city(cities):
    config = CitiesConfig()
    for k in range(len(config.cities)):
        maps = _per_class(cities, k)
        for name in (*SHARED_CHECKED, "sidewalk", "pole"):
            p = config.shared[name]
            observed = _present(maps, name).mean()
            assert _within(observed, p, N_STAT), (name, k, observed, p)


def _mean_share_gap(maps_a, maps_b, name):
    sa, sb = _share(maps_a, name), _share(maps_b, name)
    se = math.sqrt(sa.var(ddof=1) / len(sa) + sb.var(ddof=1) / len(sb))
    return abs(sa.mean() - sb.mean()), se


def test_shared_pixel_shares_equal_when_nothing_is_planted():
    # Same generator, planted probabilities 0: the two classes must be statistically identical.
    config = CitiesConfig(cities=(CityStyle("a", {"skyscraper": 0.0}),
                                  CityStyle("b", {"signboard": 0.0})),
                          ensure_discriminative=False)
    data = make_cities(N_STAT, SIZE_STAT, seed=7, config=config)
    a, b = _per_class(data, 0), _per_class(data, 1)
    assert not _present(data.label_maps, "skyscraper").any()
    assert NAME_TO_INDEX["skyscraper"] not in data.object_names
    for name in SHARED_CHECKED:
        gap, se = _mean_share_gap(a, b, name)
        assert gap <= 4 * se, (name, gap, se)
    # the nuisances too: mean brightness per class
    ia, ib = data.images[data.labels == 0].mean(axis=(1, 2, 3)), data.images[
        data.labels == 1].mean(axis=(1, 2, 3))
    assert abs(ia.mean() - ib.mean()) <= 4 * math.sqrt(ia.var() / N_STAT + ib.var() / N_STAT)


def test_shared_pixel_shares_differ_only_by_what_planted_objects_cover(cities):
    # Planted objects only take pixels away from what is behind them, so the gap in a shared
    # object's mean share is bounded by the planted objects' mean share (plus sampling error).
    config = CitiesConfig()
    a, b = _per_class(cities, 0), _per_class(cities, 1)
    planted_share = []
    for k, city in enumerate(config.cities):
        maps = _per_class(cities, k)
        planted_share.append(sum(_share(maps, name).mean() for name in city.planted))
    bound = max(planted_share)
    assert bound < 0.12  # planted objects are a modest part of the scene
    for name in SHARED_CHECKED:
        gap, se = _mean_share_gap(a, b, name)
        assert gap <= bound + 4 * se, (name, gap, bound, se)


# ---------------------------------------------------------------------------------------------
# Cities: custom configurations and validation
# ---------------------------------------------------------------------------------------------


def test_three_city_config():
    config = CitiesConfig(cities=(
        CityStyle("north", {"skyscraper": 0.9}),
        CityStyle("south", {"fence": 0.7, "grass": 0.6}),
        CityStyle("east", {"awning": 0.8, "streetlight": 0.8, "person": 0.5}),
    ))
    data = make_cities(40, 32, seed=1, config=config)
    assert data.class_names == ["north", "south", "east"]
    assert len(data) == 120 and np.array_equal(np.bincount(data.labels), [40, 40, 40])
    assert data.discriminative["east"] == ["awning", "streetlight", "person"]
    assert data.label_maps.min() > 0
    for k, city in enumerate(config.cities):
        maps = _per_class(data, k)
        mine = np.zeros(len(maps), bool)
        for name in city.planted:
            mine |= _present(maps, name)
        assert mine.mean() > 0.9, city.name
        for other in config.cities:
            if other is not city:
                for name in other.planted:
                    assert not _present(maps, name).any(), (name, city.name)


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(cities=(CityStyle("a", {"skyscrapr": 0.5}),)),
     r"'skyscrapr'.*city 'a'.*accepted objects:.*skyscraper"),
    (dict(cities=(CityStyle("a", {"fence": 1.5}),)), r"1\.5.*'fence'.*\[0, 1\]"),
    (dict(cities=(CityStyle("a", {"fence": -0.1}),)), r"-0\.1.*\[0, 1\]"),
    (dict(shared={"sky": 1.0, "road": 1.0, "cloud": 0.5}), r"'cloud'.*accepted objects:.*tree"),
    (dict(shared={"sky": 1.0, "road": 1.0, "tree": 2.0}), r"2\.0.*'tree'.*\[0, 1\]"),
    (dict(shared={"sky": 0.5, "road": 1.0}), r"'sky'.*1\.0.*0\.5"),
    (dict(cities=(CityStyle("a", {"tree": 0.5}),)), r"'tree'.*also shared"),
    (dict(cities=(CityStyle("a", {"fence": 0.5}), CityStyle("a", {"plant": 0.5}))), r"distinct"),
    (dict(cities=(CityStyle("a", {}),)), r"'a'.*ensure_discriminative"),
    (dict(cities=()), r"at least one city"),
    (dict(horizon=(0.6, 0.4)), r"horizon.*\(0\.6, 0\.4\)"),
    (dict(night_probability=1.2), r"night_probability.*1\.2"),
])
def test_bad_config_names_value_and_choices(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        CitiesConfig(**kwargs)


# ---------------------------------------------------------------------------------------------
# Landmarks
# ---------------------------------------------------------------------------------------------


def test_landmarks_contain_their_landmark_at_varying_places():
    n, size = 60, 48
    data = make_landmarks(n, size, seed=2, num_classes=4)
    assert data.class_names == ["tower", "arch", "dome", "pyramid"]
    assert data.discriminative == {"tower": ["tower"], "arch": ["bridge"], "dome": ["canopy"],
                                   "pyramid": ["tent"]}
    assert data.label_maps.min() > 0
    assert set(np.unique(data.label_maps)) <= set(data.object_names)
    for k, name in enumerate(data.class_names):
        maps = _per_class(data, k)
        obj = data.discriminative[name][0]
        mask = maps == NAME_TO_INDEX[obj]
        assert mask.any(axis=(1, 2)).all(), name
        for other in data.class_names:
            if other != name:
                assert not _present(maps, data.discriminative[other][0]).any()
        cols = np.arange(size)[None, None, :]
        centre_x = (mask * cols).sum(axis=(1, 2)) / mask.sum(axis=(1, 2))
        area = mask.mean(axis=(1, 2))
        assert centre_x.std() > 0.08 * size, name  # position varies
        assert area.std() > 0.2 * area.mean(), name  # scale varies
    again = make_landmarks(n, size, seed=2, num_classes=4)
    assert again.images.tobytes() == data.images.tobytes()


def test_landmarks_many_classes_and_bad_count():
    data = make_landmarks(2, 32, seed=0, num_classes=10)
    assert data.class_names[8:] == ["tower_2", "arch_2"]
    assert len(set(data.class_names)) == 10
    for bad in (0, 25):
        with pytest.raises(ValueError, match=f"num_classes.*{bad}"):
            make_landmarks(2, 32, num_classes=bad)


# ---------------------------------------------------------------------------------------------
# Split
# ---------------------------------------------------------------------------------------------


def test_split_indices_six_two_two_stratified_disjoint_deterministic():
    labels = np.repeat([0, 1, 2], [10, 20, 7])
    train, val, test = split_indices(labels, seed=3)
    assert np.array_equal(np.bincount(labels[train]), [6, 12, 4])
    assert np.array_equal(np.bincount(labels[val], minlength=3), [2, 4, 2])
    assert np.array_equal(np.bincount(labels[test], minlength=3), [2, 4, 1])
    everything = np.concatenate([train, val, test])
    assert np.array_equal(np.sort(everything), np.arange(len(labels)))  # disjoint and complete
    again = split_indices(labels, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip((train, val, test), again))
    other = split_indices(labels, seed=4)
    assert not np.array_equal(train, other[0])
    with pytest.raises(ValueError, match="fractions"):
        split_indices(labels, fractions=(0.5, 0.2, 0.2))


def test_imageset_split_and_subset_keep_rows_together():
    data = make_cities(10, 16, seed=0)
    train, val, test = data.split(seed=1)
    assert (len(train), len(val), len(test)) == (12, 4, 4)
    assert np.array_equal(np.bincount(train.labels), [6, 6])
    assert not set(train.ids) & set(val.ids) and not set(val.ids) & set(test.ids)
    assert set(train.ids) | set(val.ids) | set(test.ids) == set(data.ids)
    for part in (train, val, test):
        for i, ident in enumerate(part.ids):
            j = data.ids.index(ident)
            assert np.array_equal(part.images[i], data.images[j])
            assert np.array_equal(part.label_maps[i], data.label_maps[j])
            assert part.labels[i] == data.labels[j]
        assert part.object_names == data.object_names
    again = data.split(seed=1)
    assert again[0].ids == train.ids


# ---------------------------------------------------------------------------------------------
# tf.data
# ---------------------------------------------------------------------------------------------


def test_to_tf_dataset_yields_scaled_floats_and_labels():
    data = make_cities(5, 16, seed=0)
    batches = list(data.to_tf_dataset(4, with_label_maps=True))
    images = np.concatenate([b[0].numpy() for b in batches])
    assert images.dtype == np.float32 and images.min() >= 0.0 and images.max() <= 1.0
    np.testing.assert_allclose(images, data.images / 255.0, atol=1e-6)
    assert np.array_equal(np.concatenate([b[1].numpy() for b in batches]), data.labels)
    assert np.array_equal(np.concatenate([b[2].numpy() for b in batches]), data.label_maps)
    shuffled = np.concatenate([b[1].numpy() for b in data.to_tf_dataset(3, shuffle=True, seed=1)])
    assert sorted(shuffled.tolist()) == sorted(data.labels.tolist())
    with pytest.raises(ValueError, match="label maps"):
        ImageSet(data.images, data.labels, data.class_names).to_tf_dataset(2, with_label_maps=True)


# ---------------------------------------------------------------------------------------------
# Folder loader
# ---------------------------------------------------------------------------------------------


def _write_folder(tmp_path: Path, size=(20, 16)) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """Two classes of PNGs (one with an upper-case extension), label maps, and a stray file."""
    rng = np.random.default_rng(0)
    images, labels = tmp_path / "images", tmp_path / "labels"
    pixels = {}
    w, h = size
    for cls, names in {"alpha": ["b.png", "a.PNG", "c.png"], "beta": ["x.png", "y.png"]}.items():
        (images / cls).mkdir(parents=True)
        (labels / cls).mkdir(parents=True)
        for name in names:
            arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            Image.fromarray(arr).save(images / cls / name)
            Image.fromarray(rng.integers(1, 151, (h, w), dtype=np.uint8), mode="L").save(
                labels / cls / f"{Path(name).stem}.png")
            pixels[f"{cls}/{name}"] = arr
    (images / "alpha" / "notes.txt").write_text("not an image")
    return images, labels, pixels


def test_load_image_folder_pngs(tmp_path):
    images, labels, pixels = _write_folder(tmp_path)
    data = load_image_folder(images, labels)
    assert data.class_names == ["alpha", "beta"]
    assert data.ids == ["alpha/a.PNG", "alpha/b.png", "alpha/c.png", "beta/x.png", "beta/y.png"]
    assert np.array_equal(data.labels, [0, 0, 0, 1, 1])
    for i, ident in enumerate(data.ids):
        assert np.array_equal(data.images[i], pixels[ident])
        stem = Path(ident).stem
        expected = np.asarray(Image.open(labels / ident.split("/")[0] / f"{stem}.png"))
        assert np.array_equal(data.label_maps[i], expected)
    assert set(data.object_names) == set(np.unique(data.label_maps).tolist())
    resized = load_image_folder(images, labels, image_size=8)
    assert resized.images.shape == (5, 8, 8, 3) and resized.label_maps.shape == (5, 8, 8)
    # nearest neighbour keeps label values from the original map
    assert set(np.unique(resized.label_maps)) <= set(np.unique(data.label_maps))


def test_load_image_folder_jpeg_and_bmp(tmp_path):
    rng = np.random.default_rng(1)
    smooth = np.clip(np.linspace(0, 255, 24)[None, :, None] + rng.normal(0, 2, (24, 24, 3)), 0,
                     255).astype(np.uint8)
    for cls, ext in (("jpg", ".jpg"), ("jpeg", ".JPEG"), ("bmp", ".bmp")):
        (tmp_path / cls).mkdir()
        Image.fromarray(smooth).save(tmp_path / cls / f"img{ext}")
    data = load_image_folder(tmp_path)
    assert data.class_names == ["bmp", "jpeg", "jpg"]
    assert np.array_equal(data.images[0], smooth)  # BMP is lossless
    assert np.abs(data.images[1:].astype(int) - smooth).mean() < 4  # JPEG is close
    assert data.label_maps is None


def test_folder_errors_name_the_file(tmp_path):
    images, labels, _ = _write_folder(tmp_path)
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_image_folder(missing)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ImageFolder(missing)

    (labels / "beta" / "y.png").unlink()
    expected = str(labels / "beta" / "y.png")
    with pytest.raises(FileNotFoundError, match=expected):
        load_image_folder(images, labels)
    with pytest.raises(FileNotFoundError, match=expected):
        ImageFolder(images, labels)
    Image.fromarray(np.zeros((5, 7), np.uint8), mode="L").save(labels / "beta" / "y.png")
    with pytest.raises(ValueError, match=r"y\.png is 7x5.*is 20x16"):
        load_image_folder(images, labels)

    (images / "beta" / "y.png").write_bytes(b"this is not a png")
    with pytest.raises(ValueError, match=r"beta.y\.png"):
        load_image_folder(images)

    (images / "gamma").mkdir()
    with pytest.raises(ValueError, match="gamma"):
        load_image_folder(images)
    with pytest.raises(ValueError, match="gamma"):
        ImageFolder(images)


def test_folder_size_and_mode_errors(tmp_path):
    images, labels, _ = _write_folder(tmp_path)
    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(images / "beta" / "z.png")
    with pytest.raises(ValueError, match=r"z\.png is 9x9.*20x16"):
        load_image_folder(images)
    assert load_image_folder(images, image_size=12).images.shape == (6, 12, 12, 3)
    (images / "beta" / "z.png").unlink()
    Image.fromarray(np.zeros((16, 20, 3), np.uint8)).save(labels / "alpha" / "b.png")
    with pytest.raises(ValueError, match=r"b\.png.*single-channel"):
        load_image_folder(images, labels)


def test_image_folder_dataset_matches_eager_loader(tmp_path):
    images, labels, _ = _write_folder(tmp_path, size=(16, 16))
    eager = load_image_folder(images, labels)
    lazy = ImageFolder(images, labels)
    assert lazy.class_names == eager.class_names and lazy.ids == eager.ids
    assert np.array_equal(lazy.labels, eager.labels)
    parts = lazy.split(seed=0)
    assert sorted(sum(parts, [])) == list(range(len(lazy)))
    order = [4, 0, 2]
    batches = list(lazy.dataset(order, 16, 2, with_label_maps=True))
    pixels = np.concatenate([b[0].numpy() for b in batches])
    assert pixels.dtype == np.float32 and 0.0 <= pixels.min() and pixels.max() <= 1.0
    assert np.array_equal(np.round(pixels * 255).astype(np.uint8), eager.images[order])
    assert np.array_equal(np.concatenate([b[1].numpy() for b in batches]), eager.labels[order])
    assert np.array_equal(np.concatenate([b[2].numpy() for b in batches]), eager.label_maps[order])
    # resized: TensorFlow's antialiased bilinear equals PIL's up to rounding
    small = load_image_folder(images, labels, image_size=10)
    got = np.concatenate([b[0].numpy() for b in lazy.dataset(range(5), 10, 5)])
    assert np.abs(np.round(got * 255) - small.images).max() <= 1
    lazy.verify()
    (images / "beta" / "x.png").write_bytes(b"broken")
    with pytest.raises(ValueError, match=r"beta.x\.png"):
        lazy.verify()

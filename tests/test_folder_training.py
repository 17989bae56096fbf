"""Training and evaluating on a user's image folder (issue 11).

A folder of JPEG images written from the synthetic cities (64 px, 24 per class) is trained on with
``python -m models train --data-dir`` (Simpler and its retrained copy, one epoch), exported, and
evaluated with ``python -m evaluation --data-dir`` on the test split recorded in the cards. Bad
folders end with exit status 2 and a message naming the folder or file.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.__main__ import main as models_main

PER_CLASS = 24
SIZE = 64


def _write_folder(root: Path, labels: Path | None = None, per_class: int = PER_CLASS, seed: int = 3) -> None:
    from models.datasets import make_cities
    from models.presets import city_config

    data = make_cities(per_class, image_size=SIZE, seed=seed, config=city_config("tiny"))
    for i, (image, label) in enumerate(zip(data.images, data.labels)):
        cls = data.class_names[label]
        (root / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / cls / f"img{i:03d}.jpg", quality=95)
        if labels is not None:
            (labels / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(data.label_maps[i], mode="L").save(labels / cls / f"img{i:03d}.png")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("folder")
    root, labels = base / "images", base / "labels"
    _write_folder(root, labels)
    return root, labels


@pytest.fixture(scope="module")
def folder_root(folder, tmp_path_factory) -> Path:
    root, labels = folder
    out = tmp_path_factory.mktemp("folder_models")
    status = models_main(["train", "--data-dir", str(root), "--labels-dir", str(labels), "--preset", "tiny",
                          "--image-size", str(SIZE), "--architectures", "simpler", "--retrained", "--epochs", "1",
                          "--seed", "2", "--out", str(out), "--quiet"])
    assert status == 0
    return out


def _card(root: Path, name: str) -> dict:
    return json.loads((root / name / "1" / "assets.extra" / "model_card.json").read_text())


def test_folder_models_are_exported_with_their_data_set(folder, folder_root):
    from models.datasets import load_image_folder

    root, labels = folder
    assert sorted(p.name for p in folder_root.iterdir()) == ["simpler", "simpler_retrained"]
    card, retrained = _card(folder_root, "simpler"), _card(folder_root, "simpler_retrained")
    ds = card["dataset"]
    assert ds["source"] == "folder" and ds["data_dir"] == str(root.resolve())
    assert ds["labels_dir"] == str(labels.resolve())
    assert ds["classes"] == ["city_a", "city_b"] == card["class_names"]
    assert ds["image_size"] == SIZE and card["input_size"][:2] == [SIZE, SIZE]
    assert ds["split_seed"] == 2 and card["seed"] == 2 and retrained["seed"] == 3
    # 24 per class split 14/5/5; the counts add up to the files in the folder
    assert ds["counts"] == {"train": 28, "val": 10, "test": 10}
    assert sum(ds["counts"].values()) == len(list(root.glob("*/*.jpg")))
    assert retrained["dataset"] == ds
    assert card["preset"] == "tiny" and card["width"] == 0.5 and card["epochs"] == 1
    assert card["training"]["optimizer"]["learning_rate"] == 1e-3 and card["training"]["batch_size"] == 8
    # the recorded test accuracy is the model's on the recorded test split
    test = load_image_folder(root, image_size=SIZE).split(2)[2]
    correct = card["test_accuracy"] * len(test)
    assert len(test) == 10 and correct == pytest.approx(round(correct), abs=1e-6)


def test_evaluation_data_is_the_recorded_test_split(folder, folder_root, tmp_path):
    from evaluation.data import load_evaluation_data
    from models.datasets import load_image_folder

    root, labels = folder
    cards = [_card(folder_root, "simpler"), _card(folder_root, "simpler_retrained")]
    want = load_image_folder(root, labels, image_size=SIZE).split(2)[2]
    for data_dir in (None, root):  # the recorded folder, or the same one named on the command line
        got, landmarks = load_evaluation_data(cards, data_dir=data_dir)
        assert landmarks is None and got.ids == want.ids and len(got) == 10
        assert np.array_equal(got.images, want.images) and np.array_equal(got.labels, want.labels)
        assert np.array_equal(got.label_maps, want.label_maps)
    # a moved copy of the folder is accepted; a folder with other classes or other files is not
    moved = tmp_path / "moved"
    shutil.copytree(root, moved)
    assert load_evaluation_data(cards, data_dir=moved)[0].ids == want.ids
    (moved / "city_b").rename(moved / "city_c")
    with pytest.raises(ValueError, match=r"holds classes \['city_a', 'city_c'\].*trained on classes \['city_a', 'city_b'\]"):
        load_evaluation_data(cards, data_dir=moved)
    (moved / "city_c").rename(moved / "city_b")
    shutil.copy(moved / "city_b" / "img030.jpg", moved / "city_b" / "img030.jpg.jpg")
    with pytest.raises(ValueError, match=r"splits into .*'train': 29.* trained on .*'train': 28.*changed"):
        load_evaluation_data(cards, data_dir=moved)
    (moved / "city_b" / "img030.jpg.jpg").rename(moved / "city_b" / "img030.jpg")
    (moved / "city_b" / "img030.jpg").unlink()
    shutil.copy(moved / "city_b" / "img031.jpg", moved / "city_b" / "img030b.jpg")
    with pytest.raises(ValueError, match=r"files of image folder .*moved differ.*names or sizes"):
        load_evaluation_data(cards, data_dir=moved)


def test_evaluation_on_the_folder_writes_the_report(folder, folder_root, tmp_path):
    from evaluation.__main__ import main as evaluation_main

    root, _ = folder
    out = tmp_path / "report"
    status = evaluation_main(["--model-root", str(folder_root), "--data-dir", str(root), "--out", str(out),
                              "--experiments", "residuals", "--images-per-class", "3", "--batch-size", "8", "--quiet"])
    assert status == 0
    assert (out / "report.html").stat().st_size > 1000
    rows = json.loads((out / "tables" / "residuals.json").read_text())["rows"]
    assert rows and all(0.0 <= r[2] <= 1.0 for r in rows)
    assert {r[1] for r in rows} == {"different initialisations"}
    used = json.loads((out / "tables" / "models_used.json").read_text())
    assert {row[0] for row in used["rows"]} == {"simpler", "simpler_retrained"}


def test_load_image_folder_split_equals_the_split_of_the_whole_folder(folder):
    from models.datasets import SPLIT_PARTS, load_image_folder, load_image_folder_split

    root, labels = folder
    whole = load_image_folder(root, labels, image_size=32).split(5)
    for k, part in enumerate(SPLIT_PARTS):
        got, counts = load_image_folder_split(root, part, seed=5, labels_root=labels, image_size=32)
        assert counts == {"train": 28, "val": 10, "test": 10}
        assert got.ids == whole[k].ids and got.class_names == whole[k].class_names
        assert np.array_equal(got.images, whole[k].images) and np.array_equal(got.label_maps, whole[k].label_maps)
    with pytest.raises(ValueError, match=r"unknown split part 'validation'.*'val'"):
        load_image_folder_split(root, "validation")


def _train_args(root: Path, out: Path) -> list[str]:
    return ["train", "--data-dir", str(root), "--preset", "tiny", "--image-size", str(SIZE),
            "--architectures", "simpler", "--epochs", "1", "--out", str(out), "--quiet"]


def _bad_folder(tmp_path: Path, case: str) -> tuple[Path, str]:
    root = tmp_path / "images"
    if case == "missing":
        return root, rf"image folder {re.escape(str(root))} does not exist"
    _write_folder(root, per_class=5)
    if case == "one class":
        shutil.rmtree(root / "city_b")
        return root, r"holds 1 class folder \('city_a'\); a classifier needs at least 2 class folders"
    if case == "empty class":
        (root / "city_c").mkdir()
        (root / "city_c" / "notes.txt").write_text("no images here")
        return root, rf"class folder {re.escape(str(root / 'city_c'))} holds no images \(accepted extensions: .png, .jpg"
    if case == "unreadable image":
        (root / "city_b" / "img007.jpg").write_bytes(b"not a jpeg")
        return root, rf"cannot read image {re.escape(str(root / 'city_b' / 'img007.jpg'))}.*accepted: image files"
    if case == "too few images":
        for p in sorted((root / "city_a").glob("*.jpg"))[2:]:
            p.unlink()
        return root, rf"class folder {re.escape(str(root / 'city_a'))} holds 2 images, too few.*at least 4"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["missing", "one class", "empty class", "unreadable image", "too few images"])
def test_bad_folders_exit_2_naming_the_problem(tmp_path, capsys, case):
    root, message = _bad_folder(tmp_path, case)
    out = tmp_path / "models"
    assert models_main(_train_args(root, out)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert re.search(message, err), err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("args, message", [
    (["--architectures", "alexnet"], r"unknown architecture 'alexnet'; accepted: vgg11, resnet18, simple, simpler"),
    (["--architectures", "simple", "--image-size", "64"], r"image size 64 is too small for simple \(minimum: simple 96 px\)"),
    (["--only", "vgg11"], r"--only applies to the presets' synthetic data; with --data-dir use --architectures"),
])
def test_bad_folder_arguments_exit_2(folder, tmp_path, capsys, args, message):
    root, _ = folder
    assert models_main([*_train_args(root, tmp_path / "models"), *args]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_folder_options_need_data_dir(tmp_path, capsys):
    assert models_main(["train", "--preset", "tiny", "--retrained", "--out", str(tmp_path)]) == 2
    assert "--retrained needs --data-dir" in capsys.readouterr().err


@pytest.mark.slow
def test_folder_training_learns_the_cities(tmp_path):
    """The tiny recipe on a JPEG folder of 100 cities per class at 64 px: VGG11 learns them (measured
    test accuracy 0.80 on the 40 test images, chance 0.5; no null scenes in a folder)."""
    from models.folder_train import train_folder

    root = tmp_path / "images"
    _write_folder(root, per_class=100)
    (rec,) = train_folder(root, None, preset="tiny", architectures="vgg11", image_size=SIZE, verbose=0, log=None)
    assert rec.result.epochs_run == 7 and rec.result.test_accuracy >= 0.7, rec.result.test_accuracy

"""``python -m models train --jobs N``: models trained side by side in worker processes.

One run of two tiny models in two real spawned processes: the model that fails (its export path
is taken by a file) is named in the error, the other is trained, exported, and its record's test
accuracy is that of the exported SavedModel on the test split rebuilt from its card.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from evaluation.data import regenerate_test_split
from models import presets as P
from models.export import read_card
from models.parallel_train import ParallelTrainingError, default_threads


def test_jobs_is_checked_before_anything_starts(tmp_path):
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match=rf"jobs {bad!r} must be a positive integer"):
            P.train_preset("tiny", tmp_path, jobs=bad, log=None)
    with pytest.raises(ValueError, match=r"jobs 2 .* cannot be combined with a tf.distribute strategy"):
        P.train_preset("tiny", tmp_path, jobs=2, strategy=tf.distribute.get_strategy(), log=None)
    assert not any(tmp_path.iterdir())
    assert default_threads(1) >= default_threads(2) >= 1 and default_threads(10_000) == 1


def test_two_models_in_two_processes_one_failing(tmp_path):
    out = tmp_path / "models"
    out.mkdir()
    (out / "simple").write_text("not a model directory")  # simple's export must fail
    lines: list[str] = []
    with pytest.raises(ParallelTrainingError) as info:
        P.train_preset("tiny", out, only="simple,simpler", epochs=1, jobs=2, log=lines.append)
    err = info.value
    assert list(err.failures) == ["simple"] and "simple" in str(err) and "1 of 2 models failed" in str(err)
    assert [r.name for r in err.records] == ["simpler"]
    assert lines[0].startswith("training 2 models in 2 processes")
    assert any("simple FAILED" in line for line in lines) and any(line.startswith("[") and "simpler: test accuracy"
                                                                   in line for line in lines)
    rec = err.records[0]
    assert rec.result.model is None and rec.export_path == out / "simpler" / "1" and rec.result.epochs_run == 1
    assert (out / "simple").is_file()  # left as it was

    card = read_card(rec.export_path)
    assert card["preset"] == "tiny" and card["name"] == "simpler"
    test = regenerate_test_split(card["dataset"])
    probs = tf.saved_model.load(str(rec.export_path)).signatures["serving_default"](
        images=tf.constant(test.images))["probabilities"].numpy()
    accuracy = float(np.mean(np.argmax(probs, axis=-1) == test.labels))
    assert accuracy == pytest.approx(rec.result.test_accuracy, abs=1e-9)

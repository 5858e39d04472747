"""Small-data defaults: the step budget, cross-validated epochs, per-series normalization, text regularization, size-aware augmentation."""

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from kerasdl.config import TrainConfig, resolve_config
from kerasdl.optim import passes_per_epoch, steps_per_epoch, training_batch


def history_rows(run_dir):
    with open(run_dir / "history.csv") as handle:
        return list(csv.DictReader(handle))


def tiny_table(tmp_path, count=60):
    """`count` separable 4-feature examples of two classes as an .npz (a validation split of count/10)."""
    rng = np.random.default_rng(0)
    y = np.arange(count) % 2
    x = rng.normal(size=(count, 4)).astype("float32") + 3.0 * y[:, None]
    path = tmp_path / "tiny.npz"
    np.savez(path, x=x, y=y)
    return str(path)


def test_small_splits_repeat_within_an_epoch_until_the_epochs_hold_min_steps():
    # 720 images in batches of 64 are 12 steps: 20 epochs give 240, so each epoch makes 5 passes (57 steps).
    assert passes_per_epoch(720, 64, 20, 1000) == 5 and steps_per_epoch(720 * 5, 64) == 57
    assert passes_per_epoch(45, 64, 20, 1000) == 72
    # A split of under four batches trains in batches of a quarter of it (at least 16, at most all of it).
    assert (training_batch(64, 45), training_batch(64, 90), training_batch(64, 10), training_batch(64, 1437)) == (16, 23, 10, 64)
    # Large sets and a switched-off minimum keep one pass per epoch.
    assert passes_per_epoch(50_000, 64, 20, 1000) == 1 and passes_per_epoch(45, 64, 20, 0) == 1


def test_a_repeated_epoch_shuffles_each_pass_anew():
    from kerasdl.data.pipeline import make_pipeline
    from kerasdl.data.source import Split

    split = Split.from_arrays(np.arange(10, dtype="float32")[:, None], np.zeros(10))
    batches = [x[:, 0] for x, _ in make_pipeline(split, 4, training=True, passes=3).as_numpy_iterator()]
    values = np.concatenate(batches)
    assert len(batches) == math.ceil(30 / 4) and sorted(values.tolist()) == sorted(list(range(10)) * 3)
    passes = values.reshape(3, 10)
    assert all(sorted(row.tolist()) == list(range(10)) for row in passes) and len({tuple(row) for row in passes}) > 1


def test_an_explicit_epoch_count_is_the_budget_unless_min_steps_is_given_too(tmp_path):
    assert resolve_config("mlp").train.min_steps == TrainConfig.min_steps > 0
    assert resolve_config("mlp", flags={"epochs": 3}).train.min_steps == 0
    assert resolve_config("mlp", sets=["train.epochs=3"]).train.min_steps == 0
    both = resolve_config("mlp", sets=["train.epochs=3", "train.min_steps=500"])
    assert (both.train.epochs, both.train.min_steps) == (3, 500)
    # A saved config.yaml names both, so it resolves to itself.
    saved = tmp_path / "config.yaml"
    saved.write_text(yaml.safe_dump(resolve_config("mlp").to_dict()))
    assert resolve_config("mlp", config_file=str(saved)).train.min_steps == TrainConfig.min_steps


def test_a_run_on_a_small_split_trains_the_step_minimum(tmp_path):
    from kerasdl.train import train_and_evaluate

    config = resolve_config(
        "mlp", sets=["train.min_steps=40", "train.min_validation_examples=0", "train.verbose=0", f"output={tmp_path}"],
        flags={"data": tiny_table(tmp_path), "epochs": 2},
    )
    lines = []
    summary = train_and_evaluate(config, log=lines.append)
    # 48 training examples train in batches of 16 (a quarter, at least 16): 3 steps a pass, and
    # 2 epochs need 20 steps each, i.e. 7 passes.
    log = "\n".join(lines)
    assert "batches of 16: the 48 training examples are under four batches of 64" in log
    passes = passes_per_epoch(48, 16, 2, 40)
    assert passes == 7
    assert f"{passes} passes over the training split per epoch ({steps_per_epoch(48 * passes, 16)} steps)" in log
    metrics = json.loads((Path(summary["run_dir"]) / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["train_examples"] == 48


def test_a_tiny_validation_split_chooses_the_epoch_by_cross_validation_and_trains_on_both(tmp_path):
    from kerasdl.train import train_and_evaluate

    config = resolve_config("mlp", sets=["train.verbose=0", f"output={tmp_path}"], flags={"data": tiny_table(tmp_path), "epochs": 4})
    lines = []
    run_dir = Path(train_and_evaluate(config, log=lines.append)["run_dir"])
    log = "\n".join(lines)
    assert "the validation split holds 6 examples (under train.min_validation_examples=50)" in log
    choice = json.loads((run_dir / "cross_validation.json").read_text())
    assert choice["folds"] == 3 and choice["examples"] == 54 and len(choice["per_fold"]) == 3
    assert 1 <= choice["epochs"] <= 4 and len(choice["curve"]) == choice["epochs"]
    # The mean curve is the folds' mean, and the chosen epoch is its lowest loss.
    means = np.mean([fold[: len(choice["curve"])] for fold in choice["per_fold"]], axis=0)
    np.testing.assert_allclose([point["val_loss"] for point in choice["curve"]], means, rtol=1e-6)
    assert int(np.argmin([point["val_loss"] for point in choice["curve"]])) == choice["epochs"] - 1
    # The final model trained on all 54 train+validation examples for exactly the chosen epochs, and
    # its history shows the cross-validated scores as val_loss / val_accuracy.
    rows = history_rows(run_dir)
    assert len(rows) == choice["epochs"]
    np.testing.assert_allclose([float(row["val_loss"]) for row in rows], [point["val_loss"] for point in choice["curve"]], rtol=1e-6)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train_examples"] == 54 and metrics["epochs"] == choice["epochs"]
    assert not (run_dir / "checkpoints").exists()  # model.keras holds the best weights; the checkpoint only served a crash


def test_per_series_normalization_ignores_offset_scale_and_padding(tmp_path):
    import keras

    from kerasdl.models.layers import SeriesStandardization
    from kerasdl.models.lstm import lstm

    x = np.array([[[1.0], [3.0], [0.0], [0.0]], [[5.0], [5.0], [5.0], [0.0]]], "float32")
    mask = keras.layers.Masking(0.0).compute_mask(x)
    out = np.asarray(SeriesStandardization(name="series_normalization")(x, mask=mask))
    # Statistics over the valid steps only; padding comes out as 0; a constant series is only centred.
    np.testing.assert_allclose(out[..., 0], [[-1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]], atol=1e-6)
    model = lstm(input_shape=(None, 1), num_classes=2, hidden_size=8, normalization="series")
    series = np.random.default_rng(0).normal(size=(3, 20, 1)).astype("float32")
    series[0, 15:] = 0.0  # a shorter series, end-padded
    moved = np.where(series != 0.0, series * 7.0 + 40.0, 0.0).astype("float32")
    np.testing.assert_allclose(model.predict(series, verbose=0), model.predict(moved, verbose=0), atol=1e-5)
    path = tmp_path / "model.keras"
    model.save(path)
    np.testing.assert_allclose(keras.saving.load_model(path).predict(moved, verbose=0), model.predict(series, verbose=0), atol=1e-5)
    with pytest.raises(ValueError, match="normalization must be one of auto, dataset, series, none"):
        lstm(input_shape=(None, 1), num_classes=2, normalization="global")


def test_text_recurrent_regularization_is_in_the_training_graph_only():
    from kerasdl.models.gru import text_gru
    from kerasdl.models.recurrent import build_text_vocabulary, text_token_model

    vocabulary = build_text_vocabulary(["a good film", "a bad film"], max_tokens=100)
    model = text_gru(num_classes=2, vocabulary=vocabulary, sequence_length=8, hidden_size=4, spatial_dropout=0.3, recurrent_dropout=0.2)
    names = [layer.name for layer in model.layers]
    assert names.index("spatial_dropout") == names.index("embedding") + 1
    assert model.get_layer("bidirectional_0").forward_layer.recurrent_dropout == 0.2
    # The token-id model (what ONNX converts) shares the layers; dropout is off at inference.
    texts = np.array(["a good film", "a bad film"], dtype=object)
    ids = np.asarray(model.get_layer("text_vectorization")(texts)).astype("int64")
    np.testing.assert_allclose(text_token_model(model).predict(ids, verbose=0), model.predict(texts, verbose=0), atol=1e-6)


def test_small_images_get_pad_and_crop_and_larger_ones_rotation_and_zoom():
    from kerasdl.data.augment import make_augmenter

    small = [layer.name for layer in make_augmenter(image_shape=(32, 32, 3)).layers]
    large = [layer.name for layer in make_augmenter(image_shape=(224, 224, 3)).layers]
    assert "random_translation" in small and "random_rotation" not in small and "random_zoom" not in small
    assert "random_translation" not in large and {"random_rotation", "random_zoom"} <= set(large)
    # A value given applies to every size.
    assert "random_rotation" in [layer.name for layer in make_augmenter(rotation=0.1, image_shape=(32, 32, 3)).layers]
    # The shift moves whole pixels and fills the border with black: every output value is an input value or 0.
    images = np.random.default_rng(0).integers(1, 255, size=(8, 32, 32, 3)).astype("float32")
    shifted = np.asarray(make_augmenter(flip="none", brightness=0, contrast=0, image_shape=(32, 32, 3))(images, training=True))
    assert shifted.shape == images.shape and not np.array_equal(shifted, images)
    assert set(np.unique(shifted)) <= set(np.unique(images)) | {0.0}

"""`python -m training.run` for ResNet50, the LSTM (numeric and text) and BERT, at tiny sizes."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from training.run import main

TINY_BERT = ["--set", "model.num_layers=1", "--set", "model.hidden_dim=32", "--set", "model.intermediate_dim=64", "--set", "model.sequence_length=24", "--set", "model.vocabulary_size=400"]
# No cross-validated epoch choice on the tiny validation splits (GunPoint's 10 series, 300
# sentences' 30): it trains 3 fold models more, and tests/training/test_small_data.py covers it.
QUIET = ["--set", "train.verbose=2", "--set", "train.warmup_epochs=0", "--set", "train.min_validation_examples=0"]


def run_dir_of(output, model):
    (run_dir,) = sorted((Path(output) / model).iterdir())
    return run_dir


def losses(run_dir):
    with open(run_dir / "history.csv") as handle:
        return [float(row["loss"]) for row in csv.DictReader(handle)]


def test_lstm_on_digits_rows_learns(tmp_path):
    assert main(["lstm", "--epochs", "3", "--output", str(tmp_path), *QUIET]) == 0
    run_dir = run_dir_of(tmp_path, "lstm")
    history = losses(run_dir)
    assert history[-1] < history[0]
    from kerasdl.artifact import load_metadata

    metadata = load_metadata(run_dir / "model.keras")
    assert metadata["modality"] == "sequence" and metadata["input"]["shape"] == [None, 8]


def test_lstm_on_gunpoint_series(shared_data, tmp_path):
    assert main(["lstm", "--data", str(shared_data / "ucr" / "GunPoint"), "--epochs", "2", "--batch-size", "16", "--output", str(tmp_path), *QUIET]) == 0
    metrics = json.loads((run_dir_of(tmp_path, "lstm") / "metrics.json").read_text())
    # GunPoint's official test file has 150 series; the validation split comes out of TRAIN.
    assert metrics["test_examples"] == 150 and sorted(metrics["per_class"]) == ["1", "2"]


def test_text_lstm_on_sst2_lines(shared_data, tmp_path):
    assert main(["lstm", "--data", str(shared_data / "sst2"), "--epochs", "2", "--output", str(tmp_path), "--set", "data.max_examples=300", "--set", "model.max_tokens=2000", "--set", "train.keep_checkpoint=true", *QUIET]) == 0
    run_dir = run_dir_of(tmp_path, "lstm")
    from kerasdl.artifact import load_model

    model, metadata = load_model(run_dir / "model.keras")
    assert metadata["modality"] == "text" and metadata["text"]["tokenizer"] == "text_vectorization"
    assert model.predict(np.array(["a gripping , funny film", "dull and lifeless"], dtype=object), verbose=0).shape == (2, 2)
    # Tokenization ran in the tf.data pipeline: the trained (checkpointed) part takes token ids.
    import keras

    checkpoint = keras.saving.load_model(run_dir / "checkpoints" / "best.keras")
    assert checkpoint.inputs[0].dtype == "int64" and checkpoint.inputs[0].name == "token_ids"
    heldout = json.loads((run_dir / "data" / "heldout.json").read_text())
    assert isinstance(heldout["x"][0], str) and len(heldout["x"]) == len(heldout["y"]) > 0
    # The text network keeps its own (bidirectional) default, and config.yaml says so.
    assert any(isinstance(layer, keras.layers.Bidirectional) for layer in model.layers)
    import yaml

    assert yaml.safe_load((run_dir / "config.yaml").read_text())["model"]["bidirectional"] is True


def test_bert_from_scratch_then_from_its_own_preset(tmp_path, capsys):
    assert main(["bert", "--epochs", "2", "--output", str(tmp_path / "scratch"), *TINY_BERT, *QUIET]) == 0
    out = capsys.readouterr().out
    assert "generated" in out  # The built-in text set says that it is generated.
    run_dir = run_dir_of(tmp_path / "scratch", "bert")
    assert losses(run_dir)[-1] < losses(run_dir)[0]
    assert (run_dir / "preset" / "config.json").is_file() and (run_dir / "preset" / "tokenizer.json").is_file()
    # The run's preset directory is the offline path for fine-tuning again.
    assert main(["bert", "--preset", str(run_dir / "preset"), "--epochs", "1", "--output", str(tmp_path / "again"), *QUIET]) == 0
    metrics = json.loads((run_dir_of(tmp_path / "again", "bert") / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.0


def test_resnet50_two_phases_on_hymenoptera(shared_data, tmp_path, capsys):
    code = main([
        "resnet50", "--weights", "none", "--data", str(shared_data / "hymenoptera"), "--epochs", "1", "--batch-size", "32",
        "--output", str(tmp_path), "--set", "data.image_size=[32,32]", "--set", "model.image_size=32",
        "--set", "finetune.blocks=1", "--set", "finetune.epochs=1", *QUIET,
    ])
    assert code == 0
    out = capsys.readouterr().out
    assert "imageNotFound.gif (not a JPEG or PNG image)" in out
    run_dir = run_dir_of(tmp_path, "resnet50")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    head, finetune = metrics["phases"]
    # Phase 1 trains the Dense head only (2048 pooled features -> 2 classes).
    assert head["trainable_parameters"] == 2048 * 2 + 2 and head["epochs"] == 1
    assert finetune["trainable_parameters"] > head["trainable_parameters"] and finetune["epochs"] == 1
    assert "fine-tune (top 1 blocks)" in (run_dir / "report.md").read_text()
    assert metrics["test_examples"] == 153
    # metrics.json and report.md count the epochs of both phases alike.
    assert metrics["epochs"] == 2 and "- Epochs run: 2" in (run_dir / "report.md").read_text()


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["resnet50", "--epochs", "1"], "--weights none"),
        (["bert", "--preset", "bert_tiny_en_uncased", "--epochs", "1"], "--preset /"),
        (["bert", "--preset", "/no/such/preset/dir", "--epochs", "1"], "/no/such/preset/dir"),
    ],
)
def test_offline_weights_and_presets_fail_in_one_line(arguments, message, tmp_path, cli):
    result = cli("training.run", *arguments, "--output", str(tmp_path))
    assert result.returncode == 2, result.stderr[-1500:]
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1
    # Nothing half-written: the run directory is created only once data and model are good.
    assert not any(tmp_path.iterdir())


def test_text_data_for_an_image_model_is_refused(shared_data, tmp_path, capsys):
    assert main(["cnn", "--data", str(shared_data / "sst2"), "--output", str(tmp_path)]) == 2
    assert "a text table, but this model takes image data" in capsys.readouterr().err

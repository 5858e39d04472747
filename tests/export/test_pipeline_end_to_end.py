"""The README's path on real runs: `training.run` -> `export.run` -> `export.predict`, and ResNet50."""

import json

import numpy as np


def test_trained_mlp_run_exports_and_predicts_from_the_command_line(tmp_path, cli):
    trained = cli("training.run", "mlp", "--epochs", "2", "--output", str(tmp_path / "runs"), "--set", "train.verbose=0")
    assert trained.returncode == 0, trained.stderr[-2000:]
    (run_dir,) = (tmp_path / "runs" / "mlp").iterdir()
    exported = cli("export.run", str(run_dir), "--format", "savedmodel", "onnx", "--name", "digits", "--base", str(tmp_path / "exports"))
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert "onnx" in exported.stdout and "savedmodel" in exported.stdout
    version_dir = tmp_path / "exports" / "digits" / "1"
    card = json.loads((version_dir / "assets.extra" / "model_card.json").read_text())
    assert card["class_names"] == [str(digit) for digit in range(10)]
    from kerasdl.heldout import read_heldout

    features = np.stack(read_heldout(run_dir).examples[:3])
    csv_path = tmp_path / "features.csv"
    np.savetxt(csv_path, features, delimiter=",")
    predicted = cli("export.predict", str(version_dir), str(csv_path), "--format", "onnx", "--json")
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    answer = json.loads(predicted.stdout)
    assert answer["format"] == "onnx" and answer["class_names"] == card["class_names"]
    from kerasdl.artifact import load_model

    model, _ = load_model(run_dir / "model.keras")
    expected = np.argmax(model.predict(features, verbose=0), axis=-1).tolist()
    assert [row["class_id"] for row in answer["predictions"]] == expected
    assert all(abs(sum(row["probabilities"].values()) - 1.0) < 1e-4 for row in answer["predictions"])
    # A second export without --force is refused and leaves version 1 alone.
    again = cli("export.run", str(run_dir), "--name", "digits", "--base", str(tmp_path / "exports"), "--version", "1")
    assert again.returncode == 2 and "--force" in again.stderr and "Traceback" not in again.stderr


def test_resnet50_exports_with_a_single_onnx_input(tmp_path, helpers):
    import keras
    import onnxruntime

    from export.run import export_model
    from kerasdl.models import resnet50

    keras.utils.set_random_seed(0)
    model = resnet50(input_shape=(32, 32, 3), num_classes=2, weights=None, image_size=32)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, size=(24, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 2, size=24)
    model(x[:1])
    metadata = {"model": "resnet50", "modality": "image", "class_names": ["ants", "bees"],
                "input": {"shape": [32, 32, 3], "dtype": "float32", "value_range": [0, 255]}, "output": "logits"}
    run_dir = helpers.write_run(tmp_path / "run", model, metadata, (x[:8], y[:8]), (x, y))
    result = export_model(run_dir, base=tmp_path / "exports", log=lambda line: None)
    assert all(row.ok for row in result.parity) and {row.artifact for row in result.parity} == {"savedmodel", "onnx"}
    session = onnxruntime.InferenceSession(str(result.version_dir / "model.onnx"))
    # preprocess_input is inside the model, yet it must not leak a captured constant as an input.
    assert [item.name for item in session.get_inputs()] == ["images"]
    probabilities = session.run(["probabilities"], {"images": x[:4]})[0]
    np.testing.assert_allclose(probabilities, helpers.keras_reference(run_dir, x[:4]), atol=1e-3)

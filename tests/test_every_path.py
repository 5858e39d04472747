"""One model, one answer (issue 15): from a run's raw held-out files, every served path agrees.

For each model kind (image, text, series) a tiny model is trained by the real training code on
real files and exported by the real exporter. Then the run's raw held-out test examples (photos of
many sizes as files, texts as strings, series without their padding) go through every path a user
has, and each must give the `.keras` model's class for every example and its probabilities within
the format's tolerance, so that its accuracy is the run's reported test accuracy:

- the run's `.keras` (`export.predict`'s Keras predictor; images decoded, never resized outside);
- the SavedModel's `serving_default` and `image_bytes`, in a fresh process with only TensorFlow
  and TF Text (what TF Serving links);
- `model.onnx` with ONNX Runtime (fp32);
- the edge server over REST and gRPC, on the ONNX and the SavedModel backends;
- `python -m export.predict` on the files, SavedModel and ONNX.

The paths are run and compared by `benchmarks.every_path`, the code `benchmarks/equivalence.py`
runs on full-size runs; this test checks its answers with its own arithmetic.
"""

import json
from pathlib import Path

import numpy as np
import pytest

# Every path must agree on the class of an example unless Keras itself has a near tie there.
from benchmarks.every_path import NEAR_TIE


def _ucr_of_varied_lengths(shared_data, folder):
    """ECG200 (labels -1 and 1) with each series cut to its own length: raw series of many lengths."""
    rng = np.random.default_rng(0)
    for part, count in (("TRAIN", 60), ("TEST", 40)):
        lines = (shared_data / "ucr" / f"ECG200_{part}.txt").read_text().split("\n")
        out = []
        for line in [line for line in lines if line.strip()][:count]:
            values = line.split()
            length = int(rng.integers(40, len(values)))
            out.append(" ".join(values[:length]))
        (folder / f"ECG200_{part}.txt").write_text("\n".join(out) + "\n")
    return folder / "ECG200"


RUNS = {
    # Real photos of many sizes (hymenoptera's val/ folder is the test split), a tiny CNN at 24x24.
    "image": ("cnn", lambda data, tmp: str(data / "hymenoptera"),
              ["data.image_size=[24,24]", "data.max_examples=24", "model.filters=[4]", "model.dense_units=8",
               "model.dropout_rate=0.0", "augment.enabled=false"]),
    # Real SST-2 sentences, a tiny text LSTM.
    "text": ("lstm", lambda data, tmp: str(data / "sst2"),
             ["data.max_examples=40", "model.max_tokens=400", "model.sequence_length=16", "model.embedding_dim=4",
              "model.hidden_size=4", "model.bidirectional=false", "model.dropout_rate=0.0"]),
    # Series of many lengths with labels -1/1, named by the user.
    "series": ("lstm", _ucr_of_varied_lengths,
               ["model.hidden_size=4", "model.dropout_rate=0.0", "data.class_names=[abnormal,normal]"]),
}


@pytest.fixture(scope="module")
def published(shared_data, tmp_path_factory):
    """`{kind: (run_dir, version_dir, name)}`: each kind trained with kerasdl.train and exported with export.run."""
    from export.orchestrator import export_model
    from kerasdl.config import resolve_config
    from kerasdl.train import train_and_evaluate

    root = tmp_path_factory.mktemp("every_path")
    base = root / "exports"
    result = {}
    for kind, (model, source, sets) in RUNS.items():
        data = source(shared_data, root)
        # No cross-validated epoch choice on the tiny validation splits: the paths are compared
        # with the trained model, whatever its epoch (it tripled the training time here).
        sets = sets + [f"data.source={data}", "train.epochs=2", "train.min_validation_examples=0", "train.verbose=0", f"output={root / 'runs'}"]
        summary = train_and_evaluate(resolve_config(model, sets=sets), fresh=True, log=lambda line: None)
        exported = export_model(summary["run_dir"], base=base, name=kind, log=lambda line: None)
        result[kind] = (Path(summary["run_dir"]), exported.version_dir, kind)
    return result


@pytest.fixture(scope="module")
def edge_servers(published):
    """The edge server on each backend, serving every published model: `{backend: benchmarks.every_path.Edge}`."""
    from benchmarks.every_path import edge_servers

    base = next(iter(published.values()))[1].parent.parent
    with edge_servers(base) as servers:
        assert list(servers) == ["onnx", "savedmodel"]
        for backend, edge in servers.items():
            assert edge.model_names == sorted(published), backend
        yield servers


@pytest.mark.parametrize("kind", list(RUNS))
def test_every_path_gives_the_keras_answer_from_raw_held_out_files(kind, published, edge_servers, tmp_path):
    from benchmarks.every_path import check_run
    from export.formats import tolerance
    from kerasdl.artifact import load_metadata
    from kerasdl.heldout import read_heldout

    run_dir, version_dir, name = published[kind]
    metadata = load_metadata(run_dir / "model.keras")
    heldout = read_heldout(run_dir, metadata)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert heldout.complete and len(heldout.examples) == metrics["test_examples"]
    if kind == "image":
        assert len({example.shape for example in heldout.examples}) > 3  # raw photos of many sizes
        assert all(Path(run_dir / "data" / "heldout" / item).read_bytes() == data for item, data in zip(heldout.names, heldout.encoded))
    if kind == "series":
        assert len({len(series) for series in heldout.examples}) > 5  # raw series of many lengths, unpadded
        assert metadata["class_names"] == ["abnormal", "normal"]

    checked = check_run(run_dir, version_dir, edge_servers, tmp_path, name=name)
    # A complete held-out split is taken as kept, not read again.
    assert checked.heldout.names == heldout.names and np.array_equal(checked.heldout.labels, heldout.labels)
    keras = checked.keras
    assert keras.shape == (len(heldout.examples), len(metadata["class_names"]))
    keras_classes = keras.argmax(axis=-1)
    top_two = np.sort(keras, axis=-1)[:, -2:]
    decided = (top_two[:, 1] - top_two[:, 0]) > NEAR_TIE
    assert np.array_equal(checked.decided, decided)
    # The .keras on raw input is the run's own evaluation (which resized in its pipeline).
    assert np.array_equal(keras_classes[decided], heldout.predicted[decided])
    accuracy = float(np.mean(keras_classes == heldout.labels))
    assert checked.keras_accuracy == accuracy and checked.reported_accuracy == metrics["test_accuracy"]
    assert abs(accuracy - metrics["test_accuracy"]) <= np.mean(~decided) + 1e-9

    paths = checked.paths
    assert len(paths) == (9 if kind == "image" else 8)
    assert {path: answer.error for path, answer in paths.items() if answer.error} == {}
    for path, answer in paths.items():
        probabilities, names, artifact_format = answer.probabilities, answer.class_names, answer.artifact_format
        assert names == metadata["class_names"], path
        assert probabilities.shape == keras.shape, path
        limit = tolerance(metadata, artifact_format)
        difference = float(np.max(np.abs(probabilities - keras)))
        assert difference <= limit, f"{path}: max abs difference {difference:.2e} > {limit:.0e}"
        classes = probabilities.argmax(axis=-1)
        assert np.array_equal(classes[decided], keras_classes[decided]), path
        path_accuracy = float(np.mean(classes == heldout.labels))
        assert abs(path_accuracy - metrics["test_accuracy"]) <= np.mean(~decided) + 1e-9, path
        # The module's verdict is these same numbers.
        verdict = checked.verdicts[path]
        assert verdict["ok"] is True and verdict["disagreements"] == 0, (path, verdict)
        assert verdict["max_difference"] == pytest.approx(difference, abs=1e-9) and verdict["tolerance"] == limit, path
        assert verdict["accuracy"] == path_accuracy, path
    assert checked.disagreeing_examples == 0 and checked.ok

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
"""

import base64
import json
from pathlib import Path

import numpy as np
import pytest

# Every path must agree on the class of an example unless Keras itself has a near tie there.
NEAR_TIE = 1e-4


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
        sets = sets + [f"data.source={data}", "train.epochs=2", "train.verbose=0", f"output={root / 'runs'}"]
        summary = train_and_evaluate(resolve_config(model, sets=sets), fresh=True, log=lambda line: None)
        exported = export_model(summary["run_dir"], base=base, name=kind, log=lambda line: None)
        result[kind] = (Path(summary["run_dir"]), exported.version_dir, kind)
    return result


@pytest.fixture(scope="module")
def edge_servers(published):
    """The edge server on each backend, serving every published model: `{backend: (REST client, gRPC client)}`."""
    from starlette.testclient import TestClient

    from serving.client import GrpcClient
    from serving.edge.server import build_server

    base = next(iter(published.values()))[1].parent.parent
    servers = {}
    for backend in ("onnx", "savedmodel"):
        service, app, grpc_server, port = build_server(base, backend=backend, grpc_port=0)
        assert service.repository.model_names() == sorted(published), backend
        grpc_server.start()
        rest = TestClient(app)
        rest.__enter__()
        servers[backend] = (rest, GrpcClient(f"127.0.0.1:{port}", retries=0), grpc_server)
    yield {backend: items[:2] for backend, items in servers.items()}
    for rest, grpc_client, grpc_server in servers.values():
        rest.__exit__(None, None, None)
        grpc_client.close()
        grpc_server.stop(0)


def _rest(client, name, signature, inputs):
    answer = client.post(f"/v1/models/{name}:predict", json={"signature_name": signature, "inputs": inputs})
    assert answer.status_code == 200, answer.text
    outputs = answer.json()["outputs"]
    assert outputs["classes"][0] == outputs["classes"][-1]  # every class name, in class-id order
    return np.asarray(outputs["probabilities"], dtype="float32"), outputs["classes"][0]


def _grpc(client, name, signature, inputs):
    outputs = client.predict(name, inputs, signature)
    return np.asarray(outputs["probabilities"], dtype="float32"), [item.decode() for item in outputs["classes"][0]]


def _export_predict(capsys, arguments):
    from export.predict import main

    assert main([*arguments, "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    names = answer["class_names"]
    return np.asarray([[row["probabilities"][name] for name in names] for row in answer["predictions"]], "float32"), names


def _paths(kind, run_dir, version_dir, name, heldout, servers, capsys, tmp_path):
    """`{path name: (probabilities [N, K], class names it answered, format whose tolerance applies)}`."""
    from export.tfserving_check import run_fresh
    from kerasdl.runtime import pad_sequences
    from kerasdl.runtime.images import shape_groups
    from kerasdl.runtime.onnx import OnnxRunner

    examples, count = heldout.examples, len(heldout.examples)
    class_names = json.loads((version_dir / "assets.extra" / "model_card.json").read_text())["class_names"]
    paths = {}

    # The SavedModel where TF Serving runs it: a fresh process, TensorFlow and TF Text only.
    input_name = {"image": "images", "text": "text", "series": "sequences"}[kind]
    if kind == "image":
        groups = shape_groups(examples)
        runs = [("serving_default", {input_name: np.stack([examples[index] for index in indices])}) for _, indices in groups]
        runs.append(("image_bytes", {"image_bytes": np.array(heldout.encoded, dtype=object)}))
    elif kind == "text":
        runs = [("serving_default", {input_name: np.array([text.encode() for text in examples], dtype=object)})]
    else:
        runs = [("serving_default", {input_name: pad_sequences(examples)})]
    answers = run_fresh(version_dir, runs)
    probabilities = np.zeros((count, len(class_names)), "float32")
    for (_, indices), answer in zip(shape_groups(examples) if kind == "image" else [(None, np.arange(count))], answers):
        probabilities[indices] = answer["probabilities"]
    paths["savedmodel serving_default (fresh process)"] = (probabilities, [item.decode() for item in answers[0]["classes"][0]], "savedmodel")
    if kind == "image":
        paths["savedmodel image_bytes (fresh process)"] = (answers[-1]["probabilities"], [item.decode() for item in answers[-1]["classes"][0]], "savedmodel")

    paths["onnx fp32"] = (OnnxRunner(version_dir / "model.onnx").predict(examples), class_names, "onnx")

    for backend, (rest, grpc_client) in servers.items():
        tolerance_format = "onnx" if backend == "onnx" else "savedmodel"
        if kind == "image":
            # One request holding photos of many sizes.
            paths[f"edge {backend} REST image_bytes"] = (*_rest(rest, name, "image_bytes", {"image_bytes": [{"b64": base64.b64encode(data).decode()} for data in heldout.encoded]}), tolerance_format)
            paths[f"edge {backend} gRPC image_bytes"] = (*_grpc(grpc_client, name, "image_bytes", {"image_bytes": list(heldout.encoded)}), tolerance_format)
        elif kind == "text":
            paths[f"edge {backend} REST"] = (*_rest(rest, name, "serving_default", {"text": list(examples)}), tolerance_format)
            paths[f"edge {backend} gRPC"] = (*_grpc(grpc_client, name, "serving_default", {"text": list(examples)}), tolerance_format)
        else:
            # REST: one zero-padded batch; gRPC: each raw series on its own, unpadded.
            paths[f"edge {backend} REST"] = (*_rest(rest, name, "serving_default", {"sequences": pad_sequences(examples).tolist()}), tolerance_format)
            rows = [_grpc(grpc_client, name, "serving_default", {"sequences": series[None]}) for series in examples]
            paths[f"edge {backend} gRPC (one raw series a request)"] = (np.concatenate([row[0] for row in rows]), rows[0][1], tolerance_format)

    # python -m export.predict on the user's files.
    if kind == "image":
        inputs = [str(run_dir / "data" / "heldout" / file_name) for file_name in heldout.names]
    elif kind == "text":
        (tmp_path / "texts.txt").write_text("\n".join(examples) + "\n")
        inputs = [str(tmp_path / "texts.txt")]
    else:
        (tmp_path / "series.csv").write_text("\n".join(",".join(f"{value:.9g}" for value in series[:, 0]) for series in examples) + "\n")
        inputs = [str(tmp_path / "series.csv")]
    paths["export.predict savedmodel"] = (*_export_predict(capsys, [str(version_dir), *inputs]), "savedmodel")
    paths["export.predict onnx"] = (*_export_predict(capsys, [str(version_dir), "--format", "onnx", *inputs]), "onnx")
    return paths


@pytest.mark.parametrize("kind", list(RUNS))
def test_every_path_gives_the_keras_answer_from_raw_held_out_files(kind, published, edge_servers, capsys, tmp_path):
    from export.formats import tolerance
    from export.predict import load_predictor
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

    keras = load_predictor(run_dir / "model.keras").predict(heldout.examples)
    keras_classes = keras.argmax(axis=-1)
    top_two = np.sort(keras, axis=-1)[:, -2:]
    decided = (top_two[:, 1] - top_two[:, 0]) > NEAR_TIE
    # The .keras on raw input is the run's own evaluation (which resized in its pipeline).
    assert np.array_equal(keras_classes[decided], heldout.predicted[decided])
    accuracy = float(np.mean(keras_classes == heldout.labels))
    assert abs(accuracy - metrics["test_accuracy"]) <= np.mean(~decided) + 1e-9

    paths = _paths(kind, run_dir, version_dir, name, heldout, edge_servers, capsys, tmp_path)
    assert len(paths) == (9 if kind == "image" else 8)
    for path, (probabilities, names, artifact_format) in paths.items():
        assert names == metadata["class_names"], path
        assert probabilities.shape == keras.shape, path
        limit = tolerance(metadata, artifact_format)
        difference = float(np.max(np.abs(probabilities - keras)))
        assert difference <= limit, f"{path}: max abs difference {difference:.2e} > {limit:.0e}"
        classes = probabilities.argmax(axis=-1)
        assert np.array_equal(classes[decided], keras_classes[decided]), path
        assert abs(float(np.mean(classes == heldout.labels)) - metrics["test_accuracy"]) <= np.mean(~decided) + 1e-9, path

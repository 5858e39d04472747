"""Every path from a run's raw held-out files to an answer, checked against the run's `.keras` (issue 15).

For a trained run and its published version folder, `check_run` feeds the run's raw test
examples (photos of many sizes as files, texts as strings, series without their padding)
through every path a user has, and compares each with the `.keras` model:

- the run's `.keras` (`export.predict`'s Keras predictor; images decoded, never resized outside): the reference;
- the SavedModel's `serving_default` (and `image_bytes` for images) in a fresh process with
  only TensorFlow and TF Text, as TF Serving runs it (`export.tfserving_check.run_fresh`);
- `model.onnx` in ONNX Runtime (fp32);
- the edge server over REST and gRPC, on the ONNX and the SavedModel backends (`edge_servers`);
- `python -m export.predict` on the files, SavedModel and ONNX (its `main`, stdout captured).

Each path must give the `.keras` class for every example where Keras has no near tie
(`NEAR_TIE`), probabilities within its format's tolerance (`export.formats.tolerance`), and so
the run's reported test accuracy. `tests/test_every_path.py` runs this on tiny runs of every
model kind, `benchmarks/equivalence.py` on full-size runs.

It sits in benchmarks/ because it drives export and serving code together, and the command
modules `export.predict` and `serving.edge.server`, none of which product code may import
together (tests/test_architecture.py). Over 300 lines: every path's feeding (files, requests,
signatures) and the comparison stay in one module, so that the CI test and the benchmark run one
and the same check.

Example:
>>> with edge_servers("exports") as servers:
...     checked = check_run("runs/lstm/x", "exports/series/1", servers, "/tmp/scratch", name="series")
>>> checked.verdicts["edge onnx REST"]["disagreements"], checked.ok
(0, True)
"""

import base64
import contextlib
import dataclasses
import io
import json
from pathlib import Path

import numpy as np

# Every path must agree on the class of an example unless Keras itself has a near tie there:
# the gap between its two highest probabilities is at most this.
NEAR_TIE = 1e-4
# One edge request carries at most this many examples and about this many bytes of raw input:
# the edge server refuses bodies over 10 MiB (its max_body_bytes) and base64 adds a third.
REQUEST_EXAMPLES = 32
REQUEST_BYTES = 6 * 2**20
BACKENDS = ("onnx", "savedmodel")


@dataclasses.dataclass
class Answer:
    """One path's answer: probabilities `[N, K]`, the class names it gave, the format whose tolerance applies."""

    probabilities: object
    class_names: object
    artifact_format: str
    error: object = None


@dataclasses.dataclass
class Checked:
    """What `check_run` found.

    Attributes:
        heldout: the raw test examples (`kerasdl.heldout.HeldOut`), the whole test split.
        metadata: the `.keras` model's kerasdl metadata.
        keras: the `.keras` probabilities `[N, K]`.
        decided: `[N]` bool, False where Keras has a near tie.
        keras_accuracy: the `.keras` accuracy on the examples.
        reported_accuracy: the run's `metrics.json` test accuracy.
        paths: `{path name: Answer}`.
        verdicts: `{path name: compare()'s verdict}`.
        disagreeing_examples: examples (without Keras near ties) where any path gave another class.
    """

    heldout: object
    metadata: dict
    keras: np.ndarray
    decided: np.ndarray
    keras_accuracy: float
    reported_accuracy: float
    paths: dict
    verdicts: dict
    disagreeing_examples: int

    @property
    def ok(self):
        return self.disagreeing_examples == 0 and all(verdict["ok"] for verdict in self.verdicts.values())


@dataclasses.dataclass
class Edge:
    """The edge server on one backend: its REST client (in-process ASGI), its gRPC client (a real port), the models it serves."""

    rest: object
    grpc: object
    model_names: list


@contextlib.contextmanager
def edge_servers(base, backends=BACKENDS, timeout=120.0):
    """Serves every model under `base` with the edge server on each backend; yields `{backend: Edge}`.

    Args:
        base: the folder of model base paths (`exports/`).
        backends: edge backends to start.
        timeout: seconds a gRPC request may take (a batch of large photos on a busy CPU).
    """
    from starlette.testclient import TestClient

    from serving.client import GrpcClient
    from serving.edge.server import build_server

    started = {}
    with contextlib.ExitStack() as stack:
        for backend in backends:
            service, app, grpc_server, port = build_server(base, backend=backend, grpc_port=0)
            grpc_server.start()
            stack.callback(grpc_server.stop, 0)
            rest = stack.enter_context(TestClient(app))
            grpc_client = GrpcClient(f"127.0.0.1:{port}", timeout=timeout, retries=0)
            stack.callback(grpc_client.close)
            started[backend] = Edge(rest, grpc_client, service.repository.model_names())
        yield started


def raw_test_split(run_dir, metadata):
    """The run's whole test split as raw examples: its kept held-out files, or (when it kept only the first
    `kerasdl.heldout.HELDOUT_EXAMPLES`) the split read again from the data source the run names.

    Raises:
        ValueError: the run kept no held-out examples, or an image split larger than it kept.
    """
    from kerasdl.heldout import HeldOut, _strip_padding, read_heldout

    heldout = read_heldout(run_dir, metadata)
    if heldout is None:
        raise ValueError(f"{run_dir}: the run kept no held-out examples (data/heldout.json)")
    if heldout.complete:
        return heldout
    if metadata["modality"] == "image":
        raise ValueError(f"{run_dir}: the held-out photos are not the whole test split ({len(heldout.examples)} kept)")
    import yaml

    from kerasdl.config import DataConfig
    from kerasdl.data import load_data
    from kerasdl.data.pipeline import take_examples
    from kerasdl.models.registry import get_model_entry

    config = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())
    splits = load_data(DataConfig(**config["data"]), get_model_entry(config["model_name"]).modalities, config["train"]["seed"])
    x, y = take_examples(splits.test, splits.test.size)
    if metadata["modality"] == "sequence":
        examples = [_strip_padding(np.asarray(series, np.float32)) for series in x]
    elif metadata["modality"] == "text":
        examples = list(x)
    else:
        examples = [np.asarray(row, np.float32) for row in x]
    # The run's accuracy on the split is metrics.json's; the classes its evaluation gave are not kept.
    return HeldOut(examples, np.asarray(y, np.int64), None, [str(index) for index in range(len(y))], None, None, True,
                   f"{run_dir}/config.yaml data.source")


def keras_answer(run_dir, examples):
    """The run's `.keras` probabilities on raw examples, through `export.predict`'s Keras predictor."""
    from export.predict import load_predictor

    return load_predictor(Path(run_dir) / "model.keras").predict(examples)


def _chunks(sizes):
    """Index ranges of at most `REQUEST_EXAMPLES` examples and about `REQUEST_BYTES` bytes each."""
    start, total = 0, 0
    for index, size in enumerate(sizes):
        if index > start and (index - start >= REQUEST_EXAMPLES or total + size > REQUEST_BYTES):
            yield start, index
            start, total = index, 0
        total += size
    if start < len(sizes):
        yield start, len(sizes)


def _rest(client, name, signature, inputs):
    answer = client.post(f"/v1/models/{name}:predict", json={"signature_name": signature, "inputs": inputs})
    if answer.status_code != 200:
        raise RuntimeError(f"HTTP {answer.status_code}: {answer.text[:300]}")
    outputs = answer.json()["outputs"]
    # Every row must hold every class name, in class-id order.
    names = outputs["classes"][0] if all(row == outputs["classes"][0] for row in outputs["classes"]) else ["<rows differ>"]
    return np.asarray(outputs["probabilities"], dtype="float32"), names


def _grpc(client, name, signature, inputs):
    outputs = client.predict(name, inputs, signature)
    rows = [[item.decode() for item in row] for row in outputs["classes"]]
    names = rows[0] if all(row == rows[0] for row in rows) else ["<rows differ>"]
    return np.asarray(outputs["probabilities"], dtype="float32"), names


def _in_requests(call, feeds):
    """Runs `call(inputs)` on each request's inputs; joins the probabilities, keeps the names if every request agrees."""
    answers = [call(inputs) for inputs in feeds]
    names = answers[0][1] if all(answer[1] == answers[0][1] for answer in answers) else ["<requests differ>"]
    return np.concatenate([answer[0] for answer in answers]), names


def _edge_feeds(modality, heldout, protocol):
    """`(signature, [inputs of one request])` of a held-out split for the edge server over `protocol`."""
    from kerasdl.runtime import pad_sequences

    examples = heldout.examples
    if modality == "image":
        # Requests of photos of many sizes, as their files' bytes.
        ranges = _chunks([len(data) for data in heldout.encoded])
        if protocol == "rest":
            return "image_bytes", [{"image_bytes": [{"b64": base64.b64encode(data).decode()} for data in heldout.encoded[a:b]]} for a, b in ranges]
        return "image_bytes", [{"image_bytes": list(heldout.encoded[a:b])} for a, b in ranges]
    if modality == "text":
        return "serving_default", [{"text": list(examples[a:b])} for a, b in _chunks([len(text.encode()) for text in examples])]
    if modality == "features":
        return "serving_default", [{"features": np.stack(examples[a:b]).tolist()} for a, b in _chunks([row.nbytes for row in examples])]
    if protocol == "rest":
        # Zero-padded batches.
        return "serving_default", [{"sequences": pad_sequences(examples[a:b]).tolist()} for a, b in _chunks([series.nbytes for series in examples])]
    # Each raw series on its own, unpadded.
    return "serving_default", [{"sequences": series[None]} for series in examples]


def _export_predict(arguments):
    """`python -m export.predict ... --json` in this process; returns its probabilities and class names."""
    from export.predict import main

    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        status = main([*arguments, "--json"])
    if status != 0:
        raise RuntimeError(f"export.predict exited {status}")
    answer = json.loads(output.getvalue())
    names = answer["class_names"]
    return np.asarray([[row["probabilities"][name] for name in names] for row in answer["predictions"]], "float32"), names


def _export_predict_inputs(modality, run_dir, heldout, scratch):
    """The files a user passes to `export.predict`: the held-out photos, a `.txt` of texts, a CSV of series."""
    examples = heldout.examples
    scratch = Path(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    if modality == "image":
        return [str(Path(run_dir) / "data" / "heldout" / file_name) for file_name in heldout.names]
    if modality == "text":
        if any("\n" in text or "\r" in text or not text.strip() for text in examples):
            raise ValueError("a text holds a line break or is blank: it cannot be one line of a .txt file")
        (scratch / "texts.txt").write_text("\n".join(examples) + "\n", encoding="utf-8")
        return [str(scratch / "texts.txt")]
    # Time-major rows; 9 significant digits give every float32 back exactly.
    (scratch / "series.csv").write_text("\n".join(",".join(f"{value:.9g}" for value in np.ravel(series)) for series in examples) + "\n")
    return [str(scratch / "series.csv")]


def _fresh_savedmodel(modality, version_dir, metadata, heldout):
    """`{path name: Answer}` of the SavedModel in a fresh TF Serving-like process (`serving_default`, and `image_bytes`)."""
    from export.tfserving_check import run_fresh
    from kerasdl.contract import INPUT_NAMES
    from kerasdl.runtime import pad_sequences
    from kerasdl.runtime.images import shape_groups

    examples, count = heldout.examples, len(heldout.examples)
    input_name = INPUT_NAMES[modality]
    if modality == "image":
        # Photos of one size share a batch; the model resizes inside.
        groups = shape_groups(examples)
        runs = [("serving_default", {input_name: np.stack([examples[index] for index in indices])}) for _, indices in groups]
        runs.append(("image_bytes", {"image_bytes": np.array(heldout.encoded, dtype=object)}))
    elif modality == "text":
        groups = [(None, np.arange(count))]
        runs = [("serving_default", {input_name: np.array([text.encode() for text in examples], dtype=object)})]
    else:
        groups = [(None, np.arange(count))]
        runs = [("serving_default", {input_name: pad_sequences(examples)})]
    answers = run_fresh(version_dir, runs)
    probabilities = np.zeros((count, len(metadata["class_names"])), "float32")
    for (_, indices), answer in zip(groups, answers):
        probabilities[indices] = answer["probabilities"]
    names = lambda answer: [item.decode() for item in answer["classes"][0]]  # noqa: E731
    paths = {"savedmodel serving_default (fresh process)": Answer(probabilities, names(answers[0]), "savedmodel")}
    if modality == "image":
        paths["savedmodel image_bytes (fresh process)"] = Answer(answers[-1]["probabilities"], names(answers[-1]), "savedmodel")
    return paths


def gather_paths(run_dir, version_dir, heldout, servers, scratch, name=None):
    """`{path name: Answer}` of every path on `heldout`'s raw examples; a path that fails keeps its error.

    Args:
        run_dir: the run directory (its `model.keras` and held-out files).
        version_dir: the published version folder (`exports/<name>/<N>`).
        heldout: the raw examples (`raw_test_split`).
        servers: `{backend: Edge}` from `edge_servers`, serving `name`.
        scratch: a folder for the files `export.predict` reads.
        name: the served model name (default: the version folder's parent's name).
    """
    from kerasdl.artifact import load_metadata
    from kerasdl.runtime.onnx import OnnxRunner

    version_dir = Path(version_dir)
    name = name or version_dir.parent.name
    metadata = load_metadata(Path(run_dir) / "model.keras")
    modality = metadata["modality"]
    paths = {}

    def attempt(label, artifact_format, function):
        try:
            paths[label] = Answer(*function(), artifact_format)
        except Exception as error:  # Recorded: one broken path must not hide the others.
            paths[label] = Answer(None, None, artifact_format, f"{type(error).__name__}: {str(error)[:500]}")

    try:
        paths.update(_fresh_savedmodel(modality, version_dir, metadata, heldout))
    except Exception as error:
        paths["savedmodel serving_default (fresh process)"] = Answer(None, None, "savedmodel", f"{type(error).__name__}: {str(error)[:500]}")

    def onnx():
        runner = OnnxRunner(version_dir / "model.onnx")
        return runner.predict(heldout.examples), list(runner.class_names)

    attempt("onnx fp32", "onnx", onnx)
    for backend, edge in servers.items():
        artifact_format = "onnx" if backend == "onnx" else "savedmodel"
        labels = {"rest": f"edge {backend} REST", "grpc": f"edge {backend} gRPC"}
        if modality == "image":
            labels = {protocol: f"{label} image_bytes" for protocol, label in labels.items()}
        elif modality == "sequence":
            labels["grpc"] += " (one raw series a request)"
        for protocol, client, call in (("rest", edge.rest, _rest), ("grpc", edge.grpc, _grpc)):
            signature, feeds = _edge_feeds(modality, heldout, protocol)
            label = labels[protocol]
            attempt(label, artifact_format, lambda call=call, client=client, signature=signature, feeds=feeds:
                    _in_requests(lambda inputs: call(client, name, signature, inputs), feeds))
    inputs = _export_predict_inputs(modality, run_dir, heldout, scratch)
    attempt("export.predict savedmodel", "savedmodel", lambda: _export_predict([str(version_dir), *inputs]))
    attempt("export.predict onnx", "onnx", lambda: _export_predict([str(version_dir), "--format", "onnx", *inputs]))
    return paths


def near_ties(keras):
    """`[N]` bool: True where the gap between Keras' two highest probabilities is at most `NEAR_TIE`."""
    top_two = np.sort(keras, axis=-1)[:, -2:]
    return (top_two[:, 1] - top_two[:, 0]) <= NEAR_TIE


def compare(answer, keras, labels, metadata, reported_accuracy):
    """One path's verdict against the `.keras` probabilities.

    Returns:
        `{"error", "names_match", "shape_match", "max_difference", "tolerance", "within_tolerance",
        "disagreements", "accuracy", "accuracy_matches", "ok"}`: `disagreements` counts examples
        without a Keras near tie where the path's class differs; `accuracy_matches` allows a
        difference of the near ties' share (their class may go either way).
    """
    from export.formats import tolerance

    limit = tolerance(metadata, answer.artifact_format)
    decided = ~near_ties(keras)
    slack = float(np.mean(~decided)) + 1e-9
    verdict = {"error": answer.error, "names_match": answer.class_names == list(metadata["class_names"]), "shape_match": False,
               "max_difference": None, "tolerance": limit, "within_tolerance": False, "disagreements": int(np.sum(decided)),
               "accuracy": None, "accuracy_matches": False}
    if answer.error is None and np.shape(answer.probabilities) == keras.shape:
        probabilities = np.asarray(answer.probabilities, dtype="float32")
        classes = probabilities.argmax(axis=-1)
        accuracy = float(np.mean(classes == labels))
        verdict.update(
            shape_match=True, max_difference=float(np.max(np.abs(probabilities - keras))) if len(keras) else 0.0,
            disagreements=int(np.sum(classes[decided] != keras.argmax(axis=-1)[decided])), accuracy=accuracy,
            accuracy_matches=abs(accuracy - reported_accuracy) <= slack,
        )
        verdict["within_tolerance"] = verdict["max_difference"] <= limit
    verdict["ok"] = bool(verdict["error"] is None and verdict["names_match"] and verdict["shape_match"] and verdict["within_tolerance"]
                         and verdict["disagreements"] == 0 and verdict["accuracy_matches"])
    return verdict


def check_run(run_dir, version_dir, servers, scratch, name=None, heldout=None):
    """Runs every path on the run's whole raw test split and compares each with the `.keras`; returns `Checked`.

    Args:
        run_dir, version_dir, servers, scratch, name: as `gather_paths` takes them.
        heldout: the raw examples; default `raw_test_split(run_dir)`.
    """
    from kerasdl.artifact import load_metadata

    metadata = load_metadata(Path(run_dir) / "model.keras")
    heldout = heldout if heldout is not None else raw_test_split(run_dir, metadata)
    reported = float(json.loads((Path(run_dir) / "metrics.json").read_text())["test_accuracy"])
    keras = np.asarray(keras_answer(run_dir, heldout.examples), dtype="float32")
    decided = ~near_ties(keras)
    paths = gather_paths(run_dir, version_dir, heldout, servers, scratch, name)
    verdicts = {label: compare(answer, keras, heldout.labels, metadata, reported) for label, answer in paths.items()}
    keras_classes = keras.argmax(axis=-1)
    disagreeing = np.zeros(len(keras), bool)
    for answer in paths.values():
        if answer.error is not None or np.shape(answer.probabilities) != keras.shape:
            disagreeing |= decided
        else:
            disagreeing |= decided & (np.asarray(answer.probabilities).argmax(axis=-1) != keras_classes)
    return Checked(heldout, metadata, keras, decided, float(np.mean(keras_classes == heldout.labels)), reported, paths, verdicts,
                   int(np.sum(disagreeing)))


def int8_accuracy(version_dir, heldout):
    """The published `model.int8.onnx`'s accuracy on the raw examples, or None when the export left int8 out."""
    from kerasdl.runtime.onnx import OnnxRunner

    path = Path(version_dir) / "model.int8.onnx"
    if not path.is_file():
        return None
    return float(np.mean(OnnxRunner(path).predict(heldout.examples).argmax(axis=-1) == heldout.labels))

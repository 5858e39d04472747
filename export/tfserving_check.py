"""Running a SavedModel as TF Serving does: in a fresh process (`run_fresh`), or in this one (`ServingSession`).

`run_fresh` is what `export.formats.savedmodel.verify` uses: it starts
`export/tfserving_probe.py` with `python -I`, a process that imports TensorFlow
and registers TF Text's ops from their libraries, and nothing else, so that a
SavedModel which needs what only the exporting process had (an op registered
by importing a Python package) fails the export, not TF Serving.
`ServingSession` loads the SavedModel the same way in *this* process, which is
quicker for tools and tests but blind to that class of failure.
`check_serving_outputs` checks that the outputs of a signature agree with each
other (`kerasdl.contract.OUTPUT_NAMES`).
"""

import json
from pathlib import Path

import numpy as np

from kerasdl.contract import OUTPUT_NAMES


def run_fresh(folder, runs, block=(), timeout=600):
    """Runs SavedModel signatures in a fresh process that imports only TensorFlow and TF Text.

    Args:
        folder: the SavedModel folder.
        runs: `[(signature name, {input name: numpy array})]`.
        block: more modules to refuse in that process (a test blocks "tensorflow_text").
        timeout: seconds the process may take.

    Returns:
        One `{output name: numpy array}` per run, in order.

    Raises:
        VerificationError: the SavedModel does not load or run there; the message is the process's error.

    Example:
    >>> run_fresh("exports/cnn/.tmp-1-x", [("serving_default", {"images": images})])[0]["classes"].shape
    (8, 10)
    """
    import os
    import subprocess
    import sys
    import tempfile

    import tensorflow as tf
    from tensorflow.core.framework.tensor_pb2 import TensorProto

    from export.errors import VerificationError

    probe = Path(__file__).resolve().parent / "tfserving_probe.py"
    with tempfile.TemporaryDirectory(prefix="kerasdl-probe-") as request_dir:
        request = {"folder": str(Path(folder).resolve()), "runs": []}
        for index, (signature, feed) in enumerate(runs):
            inputs = {}
            for name, value in feed.items():
                file_name = f"run{index}-{name}.pb"
                Path(request_dir, file_name).write_bytes(tf.make_tensor_proto(value).SerializeToString())
                inputs[name] = file_name
            request["runs"].append({"signature": signature, "inputs": inputs})
        Path(request_dir, "request.json").write_text(json.dumps(request))
        command = [sys.executable, "-I", str(probe), request_dir] + (["--block", ",".join(block)] if block else [])
        environment = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
        environment["TF_CPP_MIN_LOG_LEVEL"] = "2"
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment)
        except subprocess.TimeoutExpired:
            raise VerificationError(f"the SavedModel did not answer within {timeout} s in a fresh TF Serving-like process") from None
        if result.returncode != 0:
            errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
            detail = errors[-1][len("error: "):] if errors else (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise VerificationError(f"the SavedModel fails where TF Serving runs it (a fresh process with TensorFlow and TF Text only): {detail}")
        outputs = []
        for index in range(len(runs)):
            run_folder = Path(request_dir, "outputs", str(index))
            outputs.append({item.stem: tf.make_ndarray(TensorProto.FromString(item.read_bytes())) for item in sorted(run_folder.glob("*.pb"))})
    return outputs


class ServingSession:
    """A SavedModel loaded in *this* process with TF Serving's loader: TF1 loader, "serve" tag, fresh graph and session.

    What this process has imported (TF Text's ops, say) is registered here, so a
    SavedModel that loads in a `ServingSession` may still fail in TF Serving;
    `verify` uses `run_fresh` instead. This stays for tests and tools.

    Use as a context manager; `run(signature, feed)` returns the signature's
    outputs as numpy arrays by output name.

    Example:
    >>> with ServingSession("exports/cnn/1") as session:
    ...     session.run("serving_default", {"images": images})["class_names"]
    """

    def __init__(self, directory):
        self.directory = str(directory)

    def __enter__(self):
        import tensorflow as tf

        self._graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=self._graph)
        with self._graph.as_default():
            self.meta_graph = tf.compat.v1.saved_model.loader.load(self._session, ["serve"], self.directory)
        self.signatures = {name: signature for name, signature in self.meta_graph.signature_def.items() if not name.startswith("__")}
        return self

    def __exit__(self, *exc_info):
        self._session.close()

    def run(self, signature_name, feed):
        signature = self.signatures[signature_name]
        if sorted(feed) != sorted(signature.inputs):
            raise KeyError(f"signature {signature_name} takes {sorted(signature.inputs)}, got {sorted(feed)}")
        fetches = {name: tensor.name for name, tensor in signature.outputs.items()}
        feeds = {signature.inputs[name].name: value for name, value in feed.items()}
        return self._session.run(fetches, feeds)


def check_serving_outputs(outputs, class_names):
    """Returns "" when `class_ids`/`class_names` agree with `probabilities`, else what is wrong."""
    missing = [name for name in OUTPUT_NAMES if name not in outputs]
    if missing:
        return f"missing outputs {missing}"
    expected_ids = np.asarray(outputs["probabilities"]).argmax(axis=-1)
    if not np.array_equal(np.asarray(outputs["class_ids"]), expected_ids):
        return "class_ids != argmax(probabilities)"
    names = [value.decode() if isinstance(value, bytes) else str(value) for value in outputs["class_names"]]
    if names != [str(class_names[index]) for index in expected_ids]:
        return "class_names do not match class_ids"
    classes = np.asarray(outputs["classes"])
    expected_classes = [str(name) for name in class_names]
    if classes.shape != np.shape(outputs["probabilities"]) or any(
        [value.decode() if isinstance(value, bytes) else str(value) for value in row] != expected_classes for row in classes
    ):
        return "classes are not every class name in class-id order"
    if not np.array_equal(np.asarray(outputs["scores"]), np.asarray(outputs["probabilities"])):
        return "scores != probabilities"
    return ""

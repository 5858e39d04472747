"""Runs a SavedModel as TF Serving would, in a fresh process that holds only what TF Serving links.

TF Serving's model server links TensorFlow's ops and TF Text's ops (since 2.0),
and nothing of Python: no Keras, no keras-hub, no kerasdl. A SavedModel that
loads in the exporting process can still fail there, because that process has
registered ops (`import tensorflow_text`, done by keras-hub) that the graph
needs. `export.formats.savedmodel` therefore runs its verification through
this script, started with `python -I` (no working directory, no user site on
`sys.path`): it imports TensorFlow, loads TF Text's op libraries (its `.so`
files, without its Python package, which would import Keras), refuses every
import listed in `BLOCKED`, loads the SavedModel with the TF1 loader and the "serve"
tag, as TF Serving does, runs each requested signature and writes the outputs.

This file is a script, not a module of the package: it must not import kerasdl
or export, and the parent passes tensors as serialized `TensorProto`s.

Usage (what `export.formats.savedmodel.run_fresh` does):
    python -I export/tfserving_probe.py REQUEST_DIR [--block MODULE,...]

`REQUEST_DIR/request.json` is `{"folder": ..., "runs": [{"signature": ..., "inputs":
{name: file}}]}`, each file a serialized `TensorProto`; the outputs go to
`REQUEST_DIR/outputs/<run>/<output>.pb` and `REQUEST_DIR/response.json` lists them.
A failure prints one line `error: ...` on stderr and exits with status 1.
"""

import importlib.machinery
import json
import os
import sys

# What TF Serving does not have: Python packages that register ops or objects
# only when imported. `--block` adds more (a test blocks tensorflow_text).
BLOCKED = ("keras", "keras_hub", "keras_nlp", "tf_keras", "tf2onnx", "kerasdl", "export", "serving")


class _Refuse:
    def __init__(self, name):
        self.name = name

    def create_module(self, spec):
        raise ImportError(f"{self.name} is not available in TF Serving")

    def exec_module(self, module):
        raise ImportError(f"{self.name} is not available in TF Serving")


class _Blocker:
    """Lets a blocked package be *found* (TensorFlow looks Keras up at import) but never run."""

    def __init__(self, blocked):
        self.blocked = set(blocked)

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] not in self.blocked:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None:
            spec.loader = _Refuse(name)
        return spec


def load_text_ops(tf):
    """Registers TF Text's kernels from its shared libraries, as TF Serving links them: no Python package.

    (`import tensorflow_text` would also import its Keras layers, and so Keras.)
    Returns the number of libraries loaded; 0 when TF Text is not installed.
    """
    import glob
    import importlib.util

    spec = importlib.util.find_spec("tensorflow_text")
    if spec is None or not spec.submodule_search_locations:
        return 0
    libraries = sorted(glob.glob(os.path.join(list(spec.submodule_search_locations)[0], "python", "ops", "_*.so")))
    for library in libraries:
        tf.load_op_library(library)
    return len(libraries)


def main(argv):
    request_dir = argv[0]
    blocked = set(BLOCKED)
    if len(argv) > 2 and argv[1] == "--block":
        blocked |= {name for name in argv[2].split(",") if name}
    sys.meta_path.insert(0, _Blocker(blocked))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    from tensorflow.core.framework.tensor_pb2 import TensorProto

    text_libraries = load_text_ops(tf) if "tensorflow_text" not in blocked else 0

    with open(os.path.join(request_dir, "request.json"), encoding="utf-8") as handle:
        request = json.load(handle)
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    try:
        with graph.as_default():
            meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], request["folder"])
    except Exception as error:  # Any load failure is the verdict; report it in one line.
        return _fail(f"TF Serving could not load {request['folder']}: {_first_line(error)}")
    signatures = {name: value for name, value in meta_graph.signature_def.items() if not name.startswith("__")}
    response = {"signatures": {name: sorted(value.outputs) for name, value in signatures.items()}, "runs": []}
    for index, run in enumerate(request["runs"]):
        signature = signatures.get(run["signature"])
        if signature is None:
            return _fail(f"the SavedModel has no signature {run['signature']!r}; it has {sorted(signatures)}")
        feeds = {}
        for name, file_name in run["inputs"].items():
            if name not in signature.inputs:
                return _fail(f"signature {run['signature']!r} has no input {name!r}; it takes {sorted(signature.inputs)}")
            with open(os.path.join(request_dir, file_name), "rb") as handle:
                feeds[signature.inputs[name].name] = tf.make_ndarray(TensorProto.FromString(handle.read()))
        fetches = {name: tensor.name for name, tensor in signature.outputs.items()}
        try:
            outputs = session.run(fetches, feeds)
        except Exception as error:  # A run failure (e.g. a kernel missing) is the verdict too.
            return _fail(f"signature {run['signature']!r} failed in TF Serving's process: {_first_line(error)}")
        folder = os.path.join(request_dir, "outputs", str(index))
        os.makedirs(folder, exist_ok=True)
        for name, value in outputs.items():
            with open(os.path.join(folder, f"{name}.pb"), "wb") as handle:
                handle.write(tf.make_tensor_proto(value).SerializeToString())
        response["runs"].append(sorted(outputs))
    response["text_op_libraries"] = text_libraries
    with open(os.path.join(request_dir, "response.json"), "w", encoding="utf-8") as handle:
        json.dump(response, handle)
    session.close()
    return 0


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _fail(message):
    print(f"error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

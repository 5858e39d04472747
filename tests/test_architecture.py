"""docs/ARCHITECTURE.md's forbidden arrows, checked against every import in the repository.

The static rules read each module's imports with `ast` (module level and
inside functions: a lazy import is still an arrow). The edge path's freedom
from TensorFlow is checked by running it in a subprocess where TensorFlow,
Keras, tf2onnx and keras-hub cannot be imported.
"""

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
PACKAGES = ("kerasdl", "export", "serving", "training", "benchmarks")
LIBRARY_PACKAGES = ("kerasdl", "export", "serving")


def module_name(path):
    parts = list(path.relative_to(REPOSITORY).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(tree, module, known):
    """The project modules that `tree` (the source of `module`) imports, resolved to module names."""
    package = module if module in known and known[module].name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            # `from export import run` imports the module export.run.
            found.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def project_modules():
    modules = {}
    for package in PACKAGES:
        for path in (REPOSITORY / package).rglob("*.py"):
            modules[module_name(path)] = path
    return modules


def import_graph():
    modules = project_modules()
    return {name: imported_modules(ast.parse(path.read_text(), str(path)), name, modules) for name, path in modules.items()}


def cli_modules(modules=None):
    """Modules run with `python -m`: a `__main__` block, a `__main__.py`, or the module whose `main` a `__main__.py` runs."""
    modules = modules or project_modules()
    clis = set()
    for name, path in modules.items():
        source = path.read_text()
        if path.name == "__main__.py" or 'if __name__ == "__main__"' in source:
            clis.add(name)
        if path.name == "__main__.py":
            tree = ast.parse(source)
            clis.update(node.module for node in ast.walk(tree)
                        if isinstance(node, ast.ImportFrom) and any(alias.name == "main" for alias in node.names))
    return clis


def violations(graph, source_prefixes, target_prefixes, exempt=()):
    """`[(module, imported)]` where a module under a source prefix imports one under a target prefix."""
    def under(name, prefixes):
        return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)

    return sorted((module, target) for module, targets in graph.items() if under(module, source_prefixes) and module not in exempt
                  for target in targets if under(target, target_prefixes))


@pytest.fixture(scope="module")
def graph():
    return import_graph()


def test_the_scanner_sees_lazy_relative_and_from_imports():
    # The rules below are only as good as this scanner: it must see every form of import.
    known = {"export": Path("export/__init__.py"), "export.run": Path("export/run.py"), "serving.edge.x": Path("serving/edge/x.py")}
    source = textwrap.dedent(
        """
        def later():
            from export import run
            import training.run
        from . import sibling
        from .. import client
        """
    )
    assert imported_modules(ast.parse(source), "serving.edge.x", known) == {
        "export", "export.run", "training.run", "serving.edge", "serving"}
    fake = {"serving.edge.x": {"export.run"}, "serving.y": {"kerasdl.contract"}}
    assert violations(fake, ["serving"], ["export", "training"]) == [("serving.edge.x", "export.run")]


def test_serving_never_imports_export_or_training(graph):
    assert violations(graph, ["serving"], ["export", "training"]) == []


def test_builders_never_import_data(graph):
    assert violations(graph, ["kerasdl.models"], ["kerasdl.data"]) == []


def test_library_code_never_imports_a_cli(graph):
    clis = cli_modules()
    assert {"training.run", "export.run", "export.predict", "serving.deploy", "serving.client", "serving.edge.server"} <= clis
    library = [name for name in graph if name.split(".")[0] in LIBRARY_PACKAGES and name not in clis]
    assert violations({name: graph[name] for name in library}, LIBRARY_PACKAGES, sorted(clis)) == []


def test_data_flows_one_way(graph):
    assert violations(graph, ["kerasdl"], ["training", "export", "serving", "benchmarks"]) == []
    assert violations(graph, ["training", "export"], ["serving"]) == []
    assert violations(graph, ["kerasdl", "export", "serving", "training"], ["benchmarks"]) == []


def test_the_tensorflow_free_modules_import_no_tensorflow_at_all():
    # kerasdl.runtime and kerasdl.contract must not import TensorFlow even lazily:
    # every function in them runs on the edge.
    blocked = ("tensorflow", "keras", "tf2onnx", "keras_hub", "tensorflow_text")
    for name, path in project_modules().items():
        if name.startswith("kerasdl.runtime") or name in ("kerasdl.contract", "kerasdl.tokenizer", "serving.labels"):
            tree = ast.parse(path.read_text())
            imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
            imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
            assert not [item for item in imported if item.split(".")[0] in blocked], name


# The edge path, run for real with TensorFlow unimportable: a tiny ONNX model
# (made with onnx.helper, no TensorFlow) served over REST by the edge server with
# the ONNX backend, and classified by `export.predict`; the client is imported.
#
# The guard refuses to *run* these packages, not to locate them: `serving.protos`
# reads TF Serving's generated proto modules from the installed files without
# executing `tensorflow/__init__.py`, which is what must never happen here.
EDGE_PATH = textwrap.dedent(
    """
    import importlib.machinery, json, sys

    BLOCKED = ("tensorflow", "keras", "tf2onnx", "keras_hub", "tensorflow_text")

    class Refuse:
        def __init__(self, name):
            self.name = name

        def create_module(self, spec):
            raise ImportError(f"import of {self.name} on the TensorFlow-free path")

        def exec_module(self, module):
            raise ImportError(f"import of {self.name} on the TensorFlow-free path")

    class NoTensorFlow:
        def find_spec(self, name, path=None, target=None):
            if name not in BLOCKED:
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is not None:
                spec.loader = Refuse(name)
            return spec

    sys.meta_path.insert(0, NoTensorFlow())
    try:
        import tensorflow
        sys.exit("the guard did not block tensorflow")
    except ImportError:
        pass
    base, csv_path = sys.argv[1], sys.argv[2]

    import serving.client
    import serving.edge.grpc_service
    from starlette.testclient import TestClient
    from serving.edge.server import build_server

    service, app, grpc_server, _ = build_server(base, backend="onnx", grpc_port=0)
    with TestClient(app) as client:
        answer = client.post("/v1/models/tiny:predict", json={"instances": [[1.0, 2.0, 3.0]]}).json()
    if grpc_server is not None:
        grpc_server.stop(0)
    from export.predict import main
    code = main([f"{base}/tiny/1", csv_path, "--json"])
    # TF Serving's proto modules (tensorflow.core.*_pb2, read by serving.protos) may
    # stay loaded; the packages themselves must never have run.
    leaked = [name for name in BLOCKED if name in sys.modules]
    leaked += sorted(name for name in sys.modules if name.startswith(("tensorflow.python", "tensorflow.lite", "keras.")))
    print(json.dumps({"answer": answer, "code": code, "leaked": leaked}))
    """
)


def _tiny_onnx(path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Softmax", ["features"], ["probabilities"], axis=-1)], "tiny",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in {"class_names": json.dumps(["a", "b", "c"]), "modality": "features",
                       "input_spec": json.dumps({"name": "features", "dtype": "float32", "shape": [None, 3]})}.items():
        model.metadata_props.add(key=key, value=value)
    path.parent.mkdir(parents=True)
    onnx.save(model, str(path))


def test_the_edge_path_runs_without_tensorflow(tmp_path):
    _tiny_onnx(tmp_path / "exports" / "tiny" / "1" / "model.onnx")
    (tmp_path / "rows.csv").write_text("1,2,3\n0,0,0\n")
    completed = subprocess.run(
        [sys.executable, "-c", EDGE_PATH, str(tmp_path / "exports"), str(tmp_path / "rows.csv")],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(REPOSITORY)),
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["leaked"] == [] and result["code"] == 0
    prediction = result["answer"]["predictions"][0]
    assert prediction["class_names"] == "c" and prediction["class_ids"] == 2
    assert abs(prediction["probabilities"][2] - 0.66524094) < 1e-6
    predicted = json.loads("\n".join(lines[:-1]))
    assert predicted["format"] == "onnx" and [row["class_name"] for row in predicted["predictions"]] == ["c", "a"]


def test_test_modules_have_unique_basenames():
    """pytest's default import mode keys test modules by basename (tests/ has no packages).

    Two `test_x.py` in different folders collect fine from a warm cache but fail on a fresh
    clone with "import file mismatch" -- which is how CI failed once.
    """
    tests_root = Path(__file__).resolve().parent
    seen = {}
    for path in sorted(tests_root.rglob("test_*.py")):
        seen.setdefault(path.name, []).append(str(path.relative_to(tests_root)))
    duplicated = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert duplicated == {}


def test_modules_over_about_300_lines_say_why():
    """The style rule: no module over about 300 lines without a reason in its docstring."""
    repo_root = REPOSITORY
    unexplained = []
    for folder in ("kerasdl", "training", "export", "serving", "benchmarks"):
        for path in sorted((repo_root / folder).rglob("*.py")):
            text = path.read_text()
            if text.count("\n") <= 320:
                continue
            docstring = ast.get_docstring(ast.parse(text)) or ""
            if "300 lines" not in docstring:
                unexplained.append(f"{path.relative_to(repo_root)} ({text.count(chr(10))} lines)")
    assert unexplained == []

"""Concurrent clients with distinct inputs: every answer row must equal the in-process answer for its own input.

`server_cases(rest_url, grpc_target, base_path, backend)` builds one case per
predict signature of every model the server serves from `base_path`, for REST
and gRPC; each case makes random inputs, sends them, and computes the expected
answer in this process with the same backend class (ONNX Runtime or
TensorFlow) loaded from the same version folder. `check_concurrency(cases,
clients, requests_per_client)` runs the clients at once (each its own mix of
cases, inputs from its own seed), then compares every row of every answer.

Example:
>>> cases = server_cases("http://127.0.0.1:8501", "127.0.0.1:8500", "exports/", backend="onnx")
>>> report = check_concurrency(cases, clients=16, requests_per_client=500)
>>> report["mismatched_rows"], report["errors"]
(0, 0)
"""

import base64
import concurrent.futures
import dataclasses
import io
import time

import numpy as np

from serving.edge.backends import PREDICT_METHOD, validate

_WORDS = ["a", "good", "bad", "film", "movie", "is", "not", "great", "awful", "the", "plot", "quite"]
# Batched runs may sum in another order than a lone run; another request's rows would be far off.
RTOL, ATOL = 1e-4, 1e-5


@dataclasses.dataclass
class Case:
    """One signature of one model through one protocol."""

    name: str
    make_inputs: object  # rng -> {input: array}
    send: object  # inputs -> {output: array}
    reference: object  # inputs -> {output: array}


def server_cases(rest_url, grpc_target, base_path, backend="auto", protocols=("rest", "grpc")):
    """Returns the `Case`s for every predict signature the server at `rest_url`/`grpc_target` serves from `base_path`."""
    from serving.client import GrpcClient
    from serving.edge.repository import ModelRepository

    repository = ModelRepository(base_path, backend=backend)
    repository.scan()
    grpc_client = GrpcClient(grpc_target, timeout=60, retries=0) if "grpc" in protocols else None
    cases = []
    for model in repository.model_names():
        version, loaded = repository.resolve(model)
        for signature in loaded.signatures.values():
            make_inputs = _input_maker(signature)
            if signature.method != PREDICT_METHOD or make_inputs is None:
                continue
            reference = _reference(loaded, signature)
            for protocol in protocols:
                send = (
                    _rest_sender(rest_url, model, version, signature)
                    if protocol == "rest"
                    else _grpc_sender(grpc_client, model, version, signature)
                )
                cases.append(Case(f"{loaded.kind}/{model}/{signature.name}/{protocol}", make_inputs, send, reference))
    return cases


def check_concurrency(cases, clients=16, requests_per_client=500, seed=0):
    """Runs `clients` concurrent clients of `requests_per_client` requests each; returns a report dict.

    The report holds the request and row counts, `errors` (requests that failed),
    `mismatched_rows` (answer rows that differ from their own input's in-process
    answer), the wall time, and a few examples of what went wrong.
    """
    if not cases:
        raise ValueError("no cases to run: the server serves no predict signature this check can feed")
    plans = []
    for client in range(clients):
        rng = np.random.default_rng([seed, client])
        plans.append([(cases[(client + index) % len(cases)], None, rng) for index in range(requests_per_client)])
    for plan in plans:
        for index, (case, _, rng) in enumerate(plan):
            plan[index] = (case, case.make_inputs(rng), None)

    def run(plan):
        answers = []
        for case, inputs, _ in plan:
            try:
                answers.append((case, inputs, case.send(inputs), None))
            except Exception as error:  # Counted and reported, not raised: the run goes on.
                answers.append((case, inputs, None, f"{case.name}: {type(error).__name__}: {error}"))
        return answers

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = [answer for answers in pool.map(run, plans) for answer in answers]
    seconds = time.perf_counter() - started
    report = {"clients": clients, "requests": len(results), "rows": 0, "errors": 0, "mismatched_rows": 0,
              "seconds": round(seconds, 2), "requests_per_second": round(len(results) / seconds, 1), "examples": []}
    for case, inputs, outputs, error in results:
        if error is not None:
            report["errors"] += 1
            report["examples"].append(error[:300])
            continue
        expected = case.reference(inputs)
        rows = len(next(iter(expected.values())))
        report["rows"] += rows
        for row in range(rows):
            problem = _row_problem(expected, outputs, row)
            if problem:
                report["mismatched_rows"] += 1
                report["examples"].append(f"{case.name} row {row}: {problem}")
    report["examples"] = report["examples"][:5]
    return report


def _input_maker(signature):
    """Returns `rng -> inputs` for `signature`, or None when its inputs cannot be generated (unknown rank, other strings)."""
    specs = list(signature.inputs.values())
    if any(spec.shape is None for spec in specs):
        return None
    for spec in specs:
        if spec.dtype == "string" and spec.name not in ("image_bytes", "text"):
            return None

    def make(rng):
        rows = int(rng.integers(1, 4))
        inputs = {}
        for spec in specs:
            if spec.name == "image_bytes":
                inputs[spec.name] = np.array([_jpeg(rng) for _ in range(rows)], dtype=object)
            elif spec.dtype == "string":
                texts = [" ".join(rng.choice(_WORDS, int(rng.integers(1, 7)))) for _ in range(rows)]
                inputs[spec.name] = np.array([text.encode() for text in texts], dtype=object)
            else:
                shape = [rows] + [8 if size is None else size for size in spec.shape[1:]]
                if np.dtype(spec.dtype).kind == "f":
                    inputs[spec.name] = rng.uniform(0, 255, shape).astype(spec.dtype)
                else:
                    inputs[spec.name] = rng.integers(0, 10, shape).astype(spec.dtype)
        return inputs

    return make


def _jpeg(rng):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _reference(backend, signature):
    def reference(inputs):
        return backend.run(*backend.prepare(signature.name, validate(signature, inputs)))

    return reference


def _rest_sender(url, model, version, signature):
    import requests

    session = requests.Session()
    names = list(signature.outputs)

    def send(inputs):
        body = {"signature_name": signature.name, "inputs": {name: _to_json(value) for name, value in inputs.items()}}
        answer = session.post(f"{url}/v1/models/{model}/versions/{version}:predict", json=body, timeout=60)
        if answer.status_code != 200:
            raise RuntimeError(f"HTTP {answer.status_code}: {answer.text[:200]}")
        outputs = answer.json()["outputs"]
        return outputs if len(names) > 1 else {names[0]: outputs}

    return send


def _grpc_sender(client, model, version, signature):
    def send(inputs):
        return client.predict(model, inputs, signature_name=signature.name, version=version)

    return send


def _to_json(value):
    if value.dtype.kind == "O":
        return [{"b64": base64.b64encode(item).decode()} for item in value]
    return value.tolist()


def _row_problem(expected, actual, row):
    """Returns "" when every output's row `row` agrees, else what differs."""
    for name, wanted in expected.items():
        if name not in actual:
            return f"output {name!r} missing"
        got, wanted = np.asarray(actual[name]), np.asarray(wanted)
        if len(got) != len(wanted):
            return f"output {name!r} has {len(got)} rows, expected {len(wanted)}"
        if wanted.dtype.kind == "f":
            if not np.allclose(np.asarray(got[row], dtype=np.float64), wanted[row], rtol=RTOL, atol=ATOL, equal_nan=True):
                return f"output {name!r} differs"
        elif _text(got[row]) != _text(wanted[row]) and not _near_tie(expected, row):
            return f"output {name!r} is {_text(got[row])!r}, expected {_text(wanted[row])!r}"
    return ""


def _text(value):
    value = value.tolist() if isinstance(value, np.ndarray) else value
    if isinstance(value, list):
        return [_text(item) for item in value]
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def _near_tie(expected, row):
    """An argmax may flip between two classes whose probabilities are within the tolerance."""
    probabilities = expected.get("probabilities")
    if probabilities is None or np.ndim(probabilities) != 2 or np.shape(probabilities)[1] < 2:
        return False
    top = np.sort(np.asarray(probabilities[row], dtype=np.float64))[-2:]
    return bool(top[1] - top[0] <= 2 * ATOL)

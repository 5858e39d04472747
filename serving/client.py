"""A client for TF Serving's REST and gRPC APIs (TF Serving itself or the edge server).

Python:
    >>> client = RestClient("http://127.0.0.1:8501")
    >>> client.predict("cnn", instances=[{"b64": encoded_jpeg}], signature_name="image_bytes")
    {'predictions': [{'probabilities': [...], 'class_ids': 3, 'class_names': 'cat'}]}
    >>> GrpcClient("127.0.0.1:8500").predict("cnn", {"images": images})
    {'probabilities': array(...), 'class_ids': array(...), 'class_names': array(...)}

CLI (prints, one example a line, the predicted class and the most probable classes
by the names the server answers in `classes`; it never invents a name for an id):
    python -m serving.client --model cnn --image cat.jpg [--image dog.png]
    python -m serving.client --model text_lstm --text "a fine film"
    python -m serving.client --model mlp --csv rows.csv [--grpc 127.0.0.1:8500]
    options: --rest URL | --grpc HOST:PORT, --version N | --label NAME, --signature NAME,
             --timeout SECONDS, --retries N, --top-k K

Errors from the server (unknown model or version, bad input) and connection
failures become a `ServingError` whose message is one line; the CLI prints it
and exits with status 1. Connection failures and "unavailable" answers are
retried (`retries` times, with a short backoff); client errors are not.

Neither client imports TensorFlow: the gRPC one builds `TensorProto`s with
NumPy (`serving.protos`).

Over ~300 lines: the REST and gRPC clients share the request building, the retries and the
answer's printing, which would otherwise be written twice.
"""

import argparse
import base64
import csv
import sys
import time

import numpy as np

DEFAULT_REST = "http://127.0.0.1:8501"
DEFAULT_GRPC = "127.0.0.1:8500"


class ServingError(RuntimeError):
    """A failed request: the message is one line naming the problem (and the HTTP/gRPC status)."""


def _model_path(model, version=None, label=None):
    if version is not None and label is not None:
        raise ValueError("give a version or a label, not both")
    path = f"/v1/models/{model}"
    if version is not None:
        path += f"/versions/{int(version)}"
    elif label is not None:
        path += f"/labels/{label}"
    return path


class RestClient:
    """TF Serving's REST API (https://www.tensorflow.org/tfx/serving/api_rest).

    Args:
        base_url: e.g. "http://127.0.0.1:8501".
        timeout: seconds per attempt.
        retries: extra attempts after a connection failure or a 502/503/504.
        backoff: seconds before the first retry (doubled each time).
    """

    def __init__(self, base_url=DEFAULT_REST, timeout=10.0, retries=2, backoff=0.2):
        import requests

        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._requests = requests
        self._session = requests.Session()

    def status(self, model, version=None, label=None):
        """`GET /v1/models/{model}[/versions/{v}|/labels/{l}]`: the model version status."""
        return self._call("GET", _model_path(model, version, label))

    def metadata(self, model, version=None, label=None):
        """`GET .../metadata`: the signature defs."""
        return self._call("GET", _model_path(model, version, label) + "/metadata")

    def predict(self, model, instances=None, inputs=None, signature_name=None, version=None, label=None):
        """`POST ...:predict` in row (`instances`) or columnar (`inputs`) form; returns the JSON answer.

        Binary strings go as `{"b64": base64}` values (see `b64`).
        """
        if (instances is None) == (inputs is None):
            raise ValueError("give exactly one of instances (row format) or inputs (columnar format)")
        body = {"instances": instances} if instances is not None else {"inputs": inputs}
        if signature_name:
            body["signature_name"] = signature_name
        return self._call("POST", _model_path(model, version, label) + ":predict", body)

    def _call(self, method, path, body=None):
        url = self.base_url + path
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                response = self._session.request(method, url, json=body, timeout=self.timeout)
            except self._requests.Timeout:
                problem = f"no answer from {self.base_url} within {self.timeout:g} s"
            except self._requests.ConnectionError:
                problem = f"cannot connect to {self.base_url}; is the server running?"
            else:
                if response.status_code in (502, 503, 504):
                    problem = f"HTTP {response.status_code} from {url}: {_error_text(response)}"
                elif response.status_code >= 400:
                    raise ServingError(f"HTTP {response.status_code}: {_error_text(response)}")
                else:
                    try:
                        return response.json()
                    except ValueError:
                        raise ServingError(f"the answer from {url} is not JSON") from None
            if attempt < self.retries:
                time.sleep(delay)
                delay *= 2
        raise ServingError(f"{problem} (after {self.retries + 1} attempts)")


def _error_text(response):
    try:
        return str(response.json().get("error", response.text)).splitlines()[0]
    except (ValueError, AttributeError):
        return (response.text or response.reason or "").strip().splitlines()[0] if response.text else str(response.reason)


def b64(data):
    """Wraps bytes the way TF Serving's REST API expects binary strings: `{"b64": ...}`."""
    return {"b64": base64.b64encode(data).decode("ascii")}


class GrpcClient:
    """TF Serving's gRPC `PredictionService` (Predict, GetModelMetadata) and `ModelService.GetModelStatus`.

    Args:
        target: "host:port".
        timeout: seconds per attempt (the gRPC deadline).
        retries: extra attempts when the server is UNAVAILABLE or the deadline passes.
        max_message_bytes: the largest message sent or received.
    """

    def __init__(self, target=DEFAULT_GRPC, timeout=10.0, retries=2, backoff=0.2, max_message_bytes=64 * 1024 * 1024):
        import grpc

        from serving import protos

        self._grpc = grpc
        self._protos = protos
        self._modules = protos.load()
        self.target = target
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        options = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
        ]
        self._channel = grpc.insecure_channel(target, options=options)
        self._prediction = self._modules.prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = self._modules.model_service_pb2_grpc.ModelServiceStub(self._channel)

    def close(self):
        self._channel.close()

    def predict(self, model, inputs, signature_name=None, version=None, label=None, output_filter=None, with_version=False):
        """Runs `PredictionService.Predict`; returns `{output: ndarray}` (and the version with `with_version`).

        Args:
            inputs: `{name: array-like}`; strings/bytes become DT_STRING.
        """
        request = self._modules.predict_pb2.PredictRequest()
        self._fill_spec(request.model_spec, model, version, label)
        if signature_name:
            request.model_spec.signature_name = signature_name
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(self._protos.to_tensor_proto(value))
        request.output_filter.extend(output_filter or [])
        response = self._call(self._prediction.Predict, request)
        outputs = {name: self._protos.to_numpy(tensor) for name, tensor in response.outputs.items()}
        if with_version:
            return outputs, response.model_spec.version.value
        return outputs

    def metadata(self, model, version=None, label=None):
        """Runs `GetModelMetadata`; returns `{"version": v, "signature_def": {...}}` as plain dicts."""
        from google.protobuf import json_format

        request = self._modules.get_model_metadata_pb2.GetModelMetadataRequest()
        self._fill_spec(request.model_spec, model, version, label)
        request.metadata_field.append("signature_def")
        response = self._call(self._prediction.GetModelMetadata, request)
        signatures = self._modules.get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        return {
            "version": response.model_spec.version.value,
            "signature_def": json_format.MessageToDict(signatures, preserving_proto_field_name=True).get("signature_def", {}),
        }

    def status(self, model, version=None, label=None):
        """Runs `ModelService.GetModelStatus`; returns `[{"version": v, "state": "AVAILABLE"}, ...]`."""
        request = self._modules.get_model_status_pb2.GetModelStatusRequest()
        self._fill_spec(request.model_spec, model, version, label)
        response = self._call(self._models.GetModelStatus, request)
        states = self._modules.get_model_status_pb2.ModelVersionStatus.State
        return [{"version": item.version, "state": states.Name(item.state)} for item in response.model_version_status]

    @staticmethod
    def _fill_spec(spec, model, version, label):
        if version is not None and label is not None:
            raise ValueError("give a version or a label, not both")
        spec.name = model
        if version is not None:
            spec.version.value = int(version)
        elif label is not None:
            spec.version_label = label

    def _call(self, method, request):
        codes = self._grpc.StatusCode
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                return method(request, timeout=self.timeout)
            except self._grpc.RpcError as error:
                code, details = error.code(), (error.details() or "").splitlines()
                message = details[0] if details else code.name
                if code not in (codes.UNAVAILABLE, codes.DEADLINE_EXCEEDED):
                    raise ServingError(f"gRPC {code.name}: {message}") from None
                if code == codes.UNAVAILABLE:
                    message = f"cannot reach {self.target}; is the server running? ({message})"
                else:
                    message = f"no answer from {self.target} within {self.timeout:g} s"
            if attempt < self.retries:
                time.sleep(delay)
                delay *= 2
        raise ServingError(f"{message} (after {self.retries + 1} attempts)")


# --- the command line ---------------------------------------------------------------------------


def _serving_input(metadata_signatures, signature_name):
    signature = metadata_signatures.get(signature_name)
    if signature is None:
        raise ServingError(f"the model has no signature {signature_name!r}; it has: {', '.join(sorted(metadata_signatures))}")
    inputs = signature.get("inputs", {})
    if len(inputs) != 1:
        raise ServingError(f"signature {signature_name!r} takes inputs {sorted(inputs)}; the CLI sends a single input")
    name, info = next(iter(inputs.items()))
    dims = [int(dim.get("size", -1)) for dim in info.get("tensor_shape", {}).get("dim", [])]
    return name, info.get("dtype"), dims


def _read_csv(path, dims):
    """Reads numeric rows; a sequence model ([B, T, F]) gets each row as a univariate series."""
    try:
        # utf-8-sig: a byte-order mark would hide the first number and drop the row as a header;
        # bytes that are not UTF-8 cannot be numbers, so replacing them leaves the row errors exact.
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
            delimiter = "\t" if str(path).lower().endswith(".tsv") else ","
            rows = [row for row in csv.reader(handle, delimiter=delimiter) if row and any(cell.strip() for cell in row)]
    except OSError as error:
        raise ServingError(f"cannot read {path}: {error.strerror}") from None
    values = []
    for number, row in enumerate(rows, start=1):
        try:
            values.append([float(cell) for cell in row])
        except ValueError:
            if number == 1:
                continue  # A header line.
            raise ServingError(f"{path} line {number} holds a non-number; every cell must be numeric") from None
    if not values:
        raise ServingError(f"{path} holds no numeric rows")
    if len({len(row) for row in values}) > 1:
        raise ServingError(f"{path}: rows have different lengths")
    array = np.asarray(values, dtype=np.float32)
    if len(dims) == 3:
        array = array[..., None]
    return array


def _top(probabilities, class_names, top_k):
    """`name=probability, ...` for the `top_k` most probable classes that have a name (`class_names[id]`, None if unknown)."""
    order = [index for index in np.argsort(-np.asarray(probabilities)) if class_names[index] is not None][:top_k]
    return ", ".join(f"{class_names[index]}={probabilities[index]:.4f}" for index in order)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m serving.client", description="Ask a TF Serving (or edge) server for predictions.")
    parser.add_argument("--model", required=True, help="model name (the folder under exports/)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--rest", default=None, help=f"REST base URL (default {DEFAULT_REST})")
    where.add_argument("--grpc", default=None, help="gRPC target host:port, e.g. 127.0.0.1:8500")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--version", type=int, default=None)
    which.add_argument("--label", default=None)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--image", action="append", help="a JPEG/PNG file (repeatable); sent to the image_bytes signature")
    what.add_argument("--text", action="append", help="a line of text (repeatable)")
    what.add_argument("--csv", help="a CSV file of numeric rows, one example a row")
    parser.add_argument("--signature", default=None, help="signature name (default: image_bytes for --image, else serving_default)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per attempt")
    parser.add_argument("--retries", type=int, default=2, help="extra attempts on connection failures")
    parser.add_argument("--top-k", type=int, default=3, help="classes shown per input (export.predict takes the same flag)")
    args = parser.parse_args(argv)

    try:
        signature_name = args.signature or ("image_bytes" if args.image else "serving_default")
        if args.grpc:
            client = GrpcClient(args.grpc, timeout=args.timeout, retries=args.retries)
            signatures = client.metadata(args.model, args.version, args.label)["signature_def"]
        else:
            client = RestClient(args.rest or DEFAULT_REST, timeout=args.timeout, retries=args.retries)
            metadata = client.metadata(args.model, args.version, args.label)
            signatures = metadata["metadata"]["signature_def"]["signature_def"]
        input_name, dtype, dims = _serving_input(signatures, signature_name)
        if args.image:
            labels = list(args.image)
            values = []
            for path in args.image:
                try:
                    with open(path, "rb") as handle:
                        values.append(handle.read())
                except OSError as error:
                    raise ServingError(f"cannot read {path}: {error.strerror}") from None
        elif args.text:
            labels, values = list(args.text), list(args.text)
        else:
            values = _read_csv(args.csv, dims)
            labels = [f"{args.csv}:{index + 1}" for index in range(len(values))]
        if args.grpc:
            outputs = client.predict(args.model, {input_name: values}, signature_name, args.version, args.label)
            probabilities = np.asarray(outputs["probabilities"], dtype=np.float32)
            names = list(outputs["class_names"])
        else:
            column = [b64(value) for value in values] if args.image else (values.tolist() if isinstance(values, np.ndarray) else values)
            answer = client.predict(args.model, inputs={input_name: column}, signature_name=signature_name, version=args.version, label=args.label)
            outputs = answer["outputs"]
            probabilities = np.asarray(outputs["probabilities"], dtype=np.float32)
            names = outputs["class_names"]
        named = _class_names_by_id(outputs, probabilities.shape[-1])
        if any(name is None for row in named for name in row):
            print("note: the server names only the predicted classes (no 'classes' output); re-export the model "
                  "to name every class", file=sys.stderr)
        for label, name, row, row_names in zip(labels, names, probabilities, named):
            print(f"{label}\t{_text(name)}\t{_top(row, row_names, args.top_k)}")
    except ServingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def _class_names_by_id(outputs, num_classes):
    """Per example, the class names by class id, from the answer only: never invented.

    Every kerasdl signature answers `classes` ([B, K], every class name in class-id
    order, as TF's canned classifiers did). An answer without it (an older export)
    names only each example's predicted class; the other ids stay None.
    """
    if "classes" in outputs:
        return [[_text(name) for name in row] for row in outputs["classes"]]
    rows = []
    for class_id, name in zip(np.asarray(outputs["class_ids"]).reshape(-1).tolist(), list(outputs["class_names"])):
        row = [None] * num_classes
        row[int(class_id)] = _text(name)
        rows.append(row)
    return rows


def _text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


if __name__ == "__main__":
    sys.exit(main())

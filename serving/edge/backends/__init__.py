"""What every edge backend offers, and the input checks they share (no TensorFlow here).

A backend wraps one model version. It describes its signatures (TF Serving's
`SignatureDef`s: named, typed inputs and outputs) and runs them in two steps:

- `prepare(signature_name, inputs)` runs per request, in the request thread: it
  decodes images, tokenizes text, and returns `(core_key, core_inputs)`, the
  batchable tensors of one underlying computation.
- `run(core_key, core_inputs)` runs the model on a batch (possibly many
  requests concatenated along axis 0) and returns every output of the signature.

Keeping per-request work out of `run` means a bad JPEG fails only its own
request, never the other requests it would have been batched with.
"""

import dataclasses

import numpy as np

from serving.edge.errors import InvalidInput, ResourceExhausted

# TF Serving's SignatureDef method names.
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"

# The dtypes a request may carry, by name; "string" is an object array of bytes.
NUMERIC_DTYPES = ("float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8", "bool")


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One named tensor of a signature: `dtype` ("float32", "int64", "string", ...) and
    `shape` (a tuple whose unknown sizes, the batch axis among them, are None; None
    itself when even the rank is unknown)."""

    name: str
    dtype: str
    shape: tuple

    def shape_text(self):
        if self.shape is None:
            return "[?]"
        return "[" + ",".join("-1" if size is None else str(size) for size in self.shape) + "]"


@dataclasses.dataclass(frozen=True)
class Signature:
    """A serving signature: input and output `TensorSpec`s by name, and TF Serving's method name.

    `strict` signatures have their input shapes checked and need a batch axis;
    signatures read from a TF1 graph are not strict, because TF Serving feeds
    whatever the request holds and lets the graph decide (its own test model's
    `x` is declared [-1,1] and answers `{"instances": [1.0, 2.0]}`).
    """

    name: str
    inputs: dict
    outputs: dict
    method: str = PREDICT_METHOD
    strict: bool = True


def classifier_outputs(num_classes):
    """The outputs every kerasdl signature has (`kerasdl.contract.OUTPUT_NAMES`, CONTRACTS.md section 5)."""
    return {
        "probabilities": TensorSpec("probabilities", "float32", (None, num_classes)),
        "class_ids": TensorSpec("class_ids", "int64", (None,)),
        "class_names": TensorSpec("class_names", "string", (None,)),
        "classes": TensorSpec("classes", "string", (None, num_classes)),
        "scores": TensorSpec("scores", "float32", (None, num_classes)),
    }


def classify(probabilities, class_names):
    """Every classifier output for softmax `probabilities` [B, K]: `kerasdl.runtime.classifier_outputs`.

    Classes the model does not name (an ONNX file without kerasdl metadata) are named by their id.
    """
    from kerasdl.runtime import classifier_outputs as outputs

    count = np.shape(probabilities)[-1]
    names = [str(class_names[index]) if index < len(class_names) else str(index) for index in range(count)]
    return outputs(probabilities, names)


def validate(signature, inputs, max_elements=None):
    """Checks `inputs` (name -> NumPy array) against `signature`; returns them cast to its dtypes.

    Args:
        signature: the `Signature` the request addresses.
        inputs: name -> array, as parsed from the request.
        max_elements: the most values all inputs together may hold (None: no bound).

    Raises:
        InvalidInput: a missing or unknown input, a wrong dtype, a value out of
            the dtype's range, a wrong shape, or inputs whose batch sizes
            differ; the message names the input.
        ResourceExhausted: more than `max_elements` values.

    Example:
    >>> spec = TensorSpec("x", "float32", (None, 2))
    >>> validate(Signature("s", {"x": spec}, {}), {"x": np.ones((3, 2))})["x"].dtype
    dtype('float32')
    """
    expected = ", ".join(sorted(signature.inputs))
    for name in inputs:
        if name not in signature.inputs:
            raise InvalidInput(f"unknown input {name!r} for signature {signature.name!r}; expected: {expected}")
    if max_elements is not None:
        total = sum(int(np.size(value)) for value in inputs.values())
        if total > max_elements:
            raise ResourceExhausted(
                f"the request holds {total} values, more than this server's limit of {max_elements} (--max-elements)"
            )
    checked = {}
    batch_sizes = set()
    for name, spec in signature.inputs.items():
        if name not in inputs:
            raise InvalidInput(f"missing input {name!r} for signature {signature.name!r}; expected: {expected}")
        array = cast(name, inputs[name], spec.dtype)
        checked[name] = array
        if not signature.strict:
            continue
        if spec.shape is not None and (
            array.ndim != len(spec.shape)
            or any(want is not None and want != got for want, got in zip(spec.shape, array.shape))
        ):
            raise InvalidInput(
                f"input {name!r} must have shape {spec.shape_text()}, got [{','.join(map(str, array.shape))}]"
            )
        if array.ndim == 0:
            raise InvalidInput(f"input {name!r} must have a batch axis, got a scalar")
        batch_sizes.add(array.shape[0])
    if len(batch_sizes) > 1:
        raise InvalidInput(f"inputs of signature {signature.name!r} have different batch sizes: {sorted(batch_sizes)}")
    if batch_sizes == {0}:
        raise InvalidInput("the request holds no examples (batch size 0)")
    return checked


def cast(name, array, dtype):
    """Casts `array` to `dtype` or raises InvalidInput saying what input `name` must hold.

    Values that the dtype cannot hold are refused rather than wrapped or
    rounded: fractions for integers, numbers out of an integer type's range,
    finite numbers beyond a float type's range, non-booleans for bool.
    """
    array = np.asarray(array) if not isinstance(array, np.ndarray) else array
    if dtype == "string":
        if array.dtype.kind not in "OSU":
            raise InvalidInput(f"input {name!r} must hold strings, got {array.dtype.name} values")
        if array.dtype.kind != "O" or any(not isinstance(item, bytes) for item in array.reshape(-1)):
            converted = np.empty(array.shape, dtype=object)
            for index, item in np.ndenumerate(array):
                if isinstance(item, str):
                    converted[index] = item.encode("utf-8")
                elif isinstance(item, bytes):
                    converted[index] = item
                else:
                    raise InvalidInput(f"input {name!r} must hold strings, got {type(item).__name__}")
            array = converted
        return array
    if array.dtype.kind not in "biuf":
        raise InvalidInput(f"input {name!r} must hold {dtype} numbers, got strings or mixed values")
    target = np.dtype(dtype)
    if (target.kind == "b") != (array.dtype.kind == "b"):
        wanted = "booleans" if target.kind == "b" else f"{dtype} numbers"
        raise InvalidInput(f"input {name!r} must hold {wanted}, got {'booleans' if array.dtype.kind == 'b' else 'numbers'}")
    if array.size and target.kind in "iu":
        if array.dtype.kind == "f" and not np.all(np.isfinite(array) & (np.mod(array, 1) == 0)):
            raise InvalidInput(f"input {name!r} must hold {dtype} values, got fractional or non-finite numbers")
        limits = np.iinfo(target)
        if array.min() < limits.min or array.max() > limits.max:
            raise InvalidInput(f"input {name!r} holds a value outside the range of {dtype} [{limits.min}, {limits.max}]")
    if array.size and target.kind == "f" and array.dtype.kind == "f" and array.dtype.itemsize > target.itemsize:
        finite = array[np.isfinite(array)]
        if finite.size and np.abs(finite).max() > np.finfo(target).max:
            raise InvalidInput(f"input {name!r} holds a value too large for {dtype}")
    return array.astype(target, copy=False)

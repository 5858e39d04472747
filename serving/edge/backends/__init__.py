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

from serving.edge.errors import InvalidInput

# The dtypes a request may carry, by name; "string" is an object array of bytes.
NUMERIC_DTYPES = ("float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8", "bool")


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One named tensor of a signature: `dtype` ("float32", "int64", "string", ...) and
    `shape` (a list whose unknown sizes, the batch axis among them, are None)."""

    name: str
    dtype: str
    shape: tuple

    def shape_text(self):
        return "[" + ",".join("-1" if size is None else str(size) for size in self.shape) + "]"


@dataclasses.dataclass(frozen=True)
class Signature:
    """A serving signature: input and output `TensorSpec`s by name."""

    name: str
    inputs: dict
    outputs: dict


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


def validate(signature, inputs):
    """Checks `inputs` (name -> NumPy array) against `signature`; returns them cast to its dtypes.

    Raises:
        InvalidInput: a missing or unknown input, a wrong dtype, a wrong shape, or
            inputs whose batch sizes differ; the message names the input.

    Example:
    >>> spec = TensorSpec("x", "float32", (None, 2))
    >>> validate(Signature("s", {"x": spec}, {}), {"x": np.ones((3, 2))})["x"].dtype
    dtype('float32')
    """
    expected = ", ".join(sorted(signature.inputs))
    for name in inputs:
        if name not in signature.inputs:
            raise InvalidInput(f"unknown input {name!r} for signature {signature.name!r}; expected: {expected}")
    checked = {}
    batch_sizes = set()
    for name, spec in signature.inputs.items():
        if name not in inputs:
            raise InvalidInput(f"missing input {name!r} for signature {signature.name!r}; expected: {expected}")
        array = cast(name, inputs[name], spec.dtype)
        if array.ndim != len(spec.shape) or any(
            want is not None and want != got for want, got in zip(spec.shape, array.shape)
        ):
            raise InvalidInput(
                f"input {name!r} must have shape {spec.shape_text()}, got [{','.join(map(str, array.shape))}]"
            )
        if array.ndim == 0:
            raise InvalidInput(f"input {name!r} must have a batch axis, got a scalar")
        batch_sizes.add(array.shape[0])
        checked[name] = array
    if len(batch_sizes) > 1:
        raise InvalidInput(f"inputs of signature {signature.name!r} have different batch sizes: {sorted(batch_sizes)}")
    if batch_sizes == {0}:
        raise InvalidInput("the request holds no examples (batch size 0)")
    return checked


def cast(name, array, dtype):
    """Casts `array` to `dtype` or raises InvalidInput saying what input `name` must hold."""
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
    if array.dtype.kind in "OSU":
        raise InvalidInput(f"input {name!r} must hold {dtype} numbers, got strings or mixed values")
    if array.dtype.kind == "f" and np.dtype(dtype).kind in "iub" and not np.all(np.equal(np.mod(array, 1), 0)):
        raise InvalidInput(f"input {name!r} must hold {dtype} values, got fractional numbers")
    return array.astype(dtype, copy=False)

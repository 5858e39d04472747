"""TF Serving's model metadata (`SignatureDefMap`) for an edge backend, as proto and as JSON.

A SavedModel's own SignatureDefs are returned unchanged (tensor names, method
names, `__saved_model_init_op` and all), as TF Serving returns them; for an
ONNX model they are built from the backend's signatures, and the metadata map
also holds `model_file` (`model.onnx` or `model.int8.onnx`, per `--onnx-variant`):
TF Serving's map is open to more keys, and clients read `signature_def` only.
"""

from serving import protos


def signature_def_map(backend):
    """Builds the `tensorflow.serving.SignatureDefMap` proto describing `backend`'s signatures."""
    modules = protos.load()
    result = modules.get_model_metadata_pb2.SignatureDefMap()
    definitions = getattr(backend, "signature_defs", None)
    if definitions:
        for name, definition in definitions.items():
            result.signature_def[name].CopyFrom(definition)
        return result
    for name, signature in backend.signatures.items():
        definition = result.signature_def[name]
        definition.method_name = signature.method
        for section, specs in (("inputs", signature.inputs), ("outputs", signature.outputs)):
            for key, spec in specs.items():
                info = getattr(definition, section)[key]
                info.name = f"{name}_{key}:0" if section == "inputs" else f"StatefulPartitionedCall:{key}"
                info.dtype = protos.dtype_enum(spec.dtype)
                if spec.shape is None:
                    info.tensor_shape.unknown_rank = True
                for size in spec.shape or ():
                    info.tensor_shape.dim.add(size=-1 if size is None else int(size))
    return result


def metadata_json(model, version, backend):
    """The REST `GET /v1/models/{model}/metadata` response, as TF Serving writes it (default fields included)."""
    from google.protobuf import json_format

    signatures = json_format.MessageToDict(
        signature_def_map(backend), preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    metadata = {"signature_def": signatures}
    if served_file(backend) is not None:
        metadata["model_file"] = served_file(backend)
    return {
        "model_spec": {"name": model, "signature_name": "", "version": str(version)},
        "metadata": metadata,
    }


def served_file(backend):
    """The ONNX file an ONNX backend serves (`model.onnx`, `model.int8.onnx`); None for a SavedModel."""
    return getattr(backend, "model_file", None)

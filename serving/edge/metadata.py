"""TF Serving's model metadata (`SignatureDefMap`) for an edge backend, as proto and as JSON."""

from serving import protos

PREDICT_METHOD = "tensorflow/serving/predict"


def signature_def_map(backend):
    """Builds the `tensorflow.serving.SignatureDefMap` proto describing `backend.signatures`."""
    modules = protos.load()
    result = modules.get_model_metadata_pb2.SignatureDefMap()
    for name, signature in backend.signatures.items():
        definition = result.signature_def[name]
        definition.method_name = PREDICT_METHOD
        for section, specs in (("inputs", signature.inputs), ("outputs", signature.outputs)):
            for key, spec in specs.items():
                info = getattr(definition, section)[key]
                info.name = f"{name}_{key}:0" if section == "inputs" else f"StatefulPartitionedCall:{key}"
                info.dtype = protos.dtype_enum(spec.dtype)
                for size in spec.shape:
                    info.tensor_shape.dim.add(size=-1 if size is None else int(size))
    return result


def metadata_json(model, version, backend):
    """The REST `GET /v1/models/{model}/metadata` response, as TF Serving writes it."""
    from google.protobuf import json_format

    signatures = json_format.MessageToDict(signature_def_map(backend), preserving_proto_field_name=True)
    return {
        "model_spec": {"name": model, "signature_name": "", "version": str(version)},
        "metadata": {"signature_def": signatures},
    }

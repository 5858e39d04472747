"""A Triton Inference Server model repository for the ONNX models under an export base path.

`python -m serving.deploy exports/ --target triton --out triton_repo/` writes:

    triton_repo/
      <model>/config.pbtxt          platform onnxruntime_onnx, inputs and outputs with dims
                                    from the ONNX graph, max_batch_size, dynamic batching with
                                    preferred sizes, the version policy, CPU instance groups
      <model>/<version>/model.onnx  each version's ONNX model
      README.md                     how to run it; text models need their tokenizer outside Triton
      docker_run.sh                 `docker run` for the nvcr.io/nvidia/tritonserver image

Every config.pbtxt is parsed back with the `ModelConfig` protobuf that ships in
`tritonclient` before anything is written, and the repository is written into
a temporary folder beside `--out` and renamed into place, so a failed run
leaves the previous repository as it was. Only ONNX models are targeted:
Triton's TensorFlow backend is deprecated.
"""

import os
import shlex
import shutil
import tempfile

from serving.layout import discover_models

# The newest Triton release listed in NVIDIA's release notes when this was written
# (25.11); its ONNX Runtime runs the opsets kerasdl exports. Override with --image.
DEFAULT_IMAGE = "nvcr.io/nvidia/tritonserver:25.11-py3"
HTTP_PORT, GRPC_PORT, METRICS_PORT = 8000, 8001, 8002
# 32 rows, the edge server's --max-batch-size. A 2 ms queue delay lets Triton fill batches under
# load; the edge server waits for none by default (its batches form while the model is busy, as
# Triton's do with a delay of 0), so pass --max-queue-delay-us 0 for the same behaviour.
DEFAULT_MAX_BATCH_SIZE = 32
DEFAULT_MAX_QUEUE_DELAY_US = 2000
# One instance: ONNX Runtime already spreads one batch over every core with its intra-op threads.
DEFAULT_INSTANCES = 1
CONTAINER_REPOSITORY = "/models"
MODEL_FILE = "model.onnx"
# ONNX tensor element types (onnx.TensorProto) -> Triton data types.
_TRITON_TYPES = {
    1: "TYPE_FP32", 2: "TYPE_UINT8", 3: "TYPE_INT8", 5: "TYPE_INT16", 6: "TYPE_INT32", 7: "TYPE_INT64",
    8: "TYPE_STRING", 9: "TYPE_BOOL", 10: "TYPE_FP16", 11: "TYPE_FP64", 12: "TYPE_UINT32", 13: "TYPE_UINT64",
}


def onnx_models(base_path):
    """Returns `{name: {version: model.onnx path}}` for the ONNX models under the export base path."""
    base_path = os.fspath(base_path)
    none_found = f"no ONNX models under {base_path} (expected <name>/<version>/{MODEL_FILE}); export with --format onnx"
    return {
        name: {version: os.path.join(base_path, name, str(version), MODEL_FILE) for version in versions}
        for name, versions in discover_models(base_path, MODEL_FILE, none_found).items()
    }


def graph_tensors(path):
    """Returns `(inputs, outputs, metadata)` of an ONNX model: `[(name, onnx element type, dims)]`, dims None when unknown.

    Raises:
        ValueError: the file is not a readable ONNX model.
    """
    import onnx

    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as error:  # onnx raises DecodeError, OSError, ... for a broken file.
        raise ValueError(f"cannot read the ONNX model {path}: {error}") from None
    initializers = {item.name for item in model.graph.initializer}

    def describe(values):
        described = []
        for value in values:
            if value.name in initializers:
                continue
            tensor = value.type.tensor_type
            dims = [dim.dim_value if dim.HasField("dim_value") else None for dim in tensor.shape.dim]
            described.append((value.name, tensor.elem_type, dims))
        return described

    metadata = {item.key: item.value for item in model.metadata_props}
    return describe(model.graph.input), describe(model.graph.output), metadata


def model_config(name, tensors, versions, policy="latest", max_batch_size=DEFAULT_MAX_BATCH_SIZE, preferred_batch_sizes=None,
                 max_queue_delay_us=DEFAULT_MAX_QUEUE_DELAY_US, instances=DEFAULT_INSTANCES):
    """Builds Triton's `ModelConfig` for one ONNX model.

    Args:
        name: the model's name (its folder in the repository).
        tensors: `(inputs, outputs, metadata)` from `graph_tensors`.
        versions: the versions in the repository; with policy "specific", the ones to serve.
        policy: "latest", "all" or "specific" (Triton's version_policy).
        max_batch_size: the largest batch Triton forms; 0 when the graph has no free batch axis.
        preferred_batch_sizes: the batch sizes dynamic batching aims for (default: powers of two up to the max).
        max_queue_delay_us: how long a request may wait for others to join its batch.
        instances: model instances on the CPU (each runs one batch at a time).

    Example:
    >>> config = model_config("cnn", graph_tensors("exports/cnn/1/model.onnx"), [1])
    >>> list(config.input[0].dims)
    [32, 32, 3]
    """
    from tritonclient.grpc import model_config_pb2

    inputs, outputs, _ = tensors
    batchable = all(dims and dims[0] is None for _, _, dims in inputs + outputs)
    config = model_config_pb2.ModelConfig(name=name, platform="onnxruntime_onnx")
    config.max_batch_size = int(max_batch_size) if batchable else 0
    for section, values in (("input", inputs), ("output", outputs)):
        for tensor_name, element_type, dims in values:
            if element_type not in _TRITON_TYPES:
                raise ValueError(f"model {name!r}: tensor {tensor_name!r} has ONNX type {element_type}, which Triton does not take")
            kept = dims[1:] if batchable else dims
            getattr(config, section).add(
                name=tensor_name,
                data_type=model_config_pb2.DataType.Value(_TRITON_TYPES[element_type]),
                dims=[-1 if size is None else int(size) for size in kept],
            )
    if policy == "latest":
        config.version_policy.latest.num_versions = 1
    elif policy == "all":
        config.version_policy.all.SetInParent()
    else:
        config.version_policy.specific.versions.extend(versions)
    if batchable:
        sizes = preferred_batch_sizes or [size for size in (4, 8, 16, 32, 64, 128) if size <= max_batch_size] or [max_batch_size]
        if any(size > max_batch_size or size < 1 for size in sizes):
            raise ValueError(f"preferred batch sizes {sizes} must lie in 1..{max_batch_size} (the max batch size)")
        config.dynamic_batching.preferred_batch_size.extend(sizes)
        config.dynamic_batching.max_queue_delay_microseconds = int(max_queue_delay_us)
    config.instance_group.add(kind=model_config_pb2.ModelInstanceGroup.KIND_CPU, count=int(instances))
    return config


def config_text(config):
    """config.pbtxt's text, parsed back with tritonclient's `ModelConfig` (raises when it does not round-trip)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    text = text_format.MessageToString(config, use_short_repeated_primitives=True)
    if text_format.Parse(text, model_config_pb2.ModelConfig()) != config:
        raise ValueError(f"config.pbtxt of {config.name!r} does not round-trip through Triton's ModelConfig parser")
    return text


def docker_run_command(repository, image=DEFAULT_IMAGE):
    """The `docker run` argv: Triton's HTTP, gRPC and metrics ports, the repository mounted read-only."""
    return [
        "docker", "run", "--rm", "--name", "kerasdl-triton",
        "-p", f"{HTTP_PORT}:{HTTP_PORT}", "-p", f"{GRPC_PORT}:{GRPC_PORT}", "-p", f"{METRICS_PORT}:{METRICS_PORT}",
        "--mount", f"type=bind,source={repository},target={CONTAINER_REPOSITORY},readonly",
        image,
        "tritonserver", f"--model-repository={CONTAINER_REPOSITORY}",
    ]


def write_repository(base_path, out, policy="latest", specific_versions=None, max_batch_size=DEFAULT_MAX_BATCH_SIZE,
                     preferred_batch_sizes=None, max_queue_delay_us=DEFAULT_MAX_QUEUE_DELAY_US, instances=DEFAULT_INSTANCES,
                     image=DEFAULT_IMAGE):
    """Writes the Triton model repository for every ONNX model under `base_path` into `out`.

    Returns `(written file paths, docker command line)`.

    Raises:
        ValueError: no ONNX model, versions of one model with different inputs or
            outputs, a version the policy names that does not exist, or bad batching values.

    Example:
    >>> written, command = write_repository("exports", "triton_repo")
    """
    if max_batch_size < 1 or instances < 1 or max_queue_delay_us < 0:
        raise ValueError("--max-batch-size and --instances must be at least 1, --max-queue-delay-us at least 0")
    models = onnx_models(base_path)
    configs, served, text_models = {}, {}, []
    for name, versions in models.items():
        if policy == "specific":
            missing = [version for version in specific_versions or [] if version not in versions]
            if missing or not specific_versions:
                raise ValueError(f"model {name!r} has no version(s) {missing or '(none given)'}; it has {sorted(versions)}")
            served[name] = [version for version in versions if version in specific_versions]
        else:
            served[name] = list(versions) if policy == "all" else [max(versions)]
        tensors = [graph_tensors(versions[version]) for version in served[name]]
        if any(item[:2] != tensors[0][:2] for item in tensors[1:]):
            raise ValueError(f"model {name!r}: its versions {served[name]} have different inputs or outputs; serve one (--policy specific)")
        configs[name] = config_text(
            model_config(name, tensors[-1], served[name], policy, max_batch_size, preferred_batch_sizes, max_queue_delay_us, instances)
        )
        if tensors[-1][2].get("modality") == "text":
            text_models.append(name)
    out = os.path.abspath(os.fspath(out))
    command_line = " ".join(shlex.quote(part) for part in docker_run_command(out, image))
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".tmp-triton-", dir=parent)
    try:
        for name, text in configs.items():
            os.makedirs(os.path.join(staging, name))
            _write(os.path.join(staging, name, "config.pbtxt"), text)
            for version in served[name]:
                os.makedirs(os.path.join(staging, name, str(version)))
                shutil.copy2(models[name][version], os.path.join(staging, name, str(version), MODEL_FILE))
        _write(os.path.join(staging, "README.md"), _readme(base_path, configs, served, text_models, command_line))
        _write(os.path.join(staging, "docker_run.sh"), "#!/bin/sh\n# Serve the ONNX models with Triton (generated by python -m serving.deploy).\nexec " + command_line + "\n")
        _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    os.chmod(os.path.join(out, "docker_run.sh"), 0o755)
    written = [os.path.join(out, name, "config.pbtxt") for name in configs]
    written += [os.path.join(out, name, str(version), MODEL_FILE) for name in configs for version in served[name]]
    written += [os.path.join(out, "README.md"), os.path.join(out, "docker_run.sh")]
    return written, command_line


def _publish(staging, out):
    """Renames the finished repository into place; an earlier one is swapped out and then removed."""
    for root, folders, files in os.walk(staging):
        os.chmod(root, 0o755)  # mkdtemp's 0700 would hide the repository from a container's non-root user.
        for file in files:
            os.chmod(os.path.join(root, file), 0o644)
    previous = None
    if os.path.exists(out):
        previous = tempfile.mkdtemp(prefix=".old-triton-", dir=os.path.dirname(out))
        os.replace(out, os.path.join(previous, "repository"))
    os.replace(staging, out)
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)


def _write(path, text):
    with open(path, "w", encoding="utf-8") as stream:
        stream.write(text)


def _readme(base_path, configs, served, text_models, command_line):
    lines = [
        "# Triton model repository (generated by `python -m serving.deploy --target triton`)",
        "",
        f"ONNX models from `{os.path.abspath(os.fspath(base_path))}`, served by Triton's ONNX Runtime backend on the CPU.",
        "",
        "| model | versions |",
        "| --- | --- |",
        *[f"| {name} | {', '.join(map(str, served[name]))} |" for name in configs],
        "",
        "Run it (HTTP 8000, gRPC 8001, Prometheus metrics 8002):",
        "",
        "```bash",
        command_line,
        "curl localhost:8000/v2/health/ready",
        "```",
        "",
        "Each `config.pbtxt` names the inputs and outputs of the ONNX graph; requests use Triton's",
        "KServe v2 protocol (`POST /v2/models/<model>/infer`), not TF Serving's.",
    ]
    if text_models:
        lines += [
            "",
            "## Text models need their tokenizer outside Triton",
            "",
            f"{', '.join(text_models)} take token ids (`token_ids` ...), not text: Triton runs the ONNX graph only.",
            "Tokenize on the client with the `tokenizer/` folder that lies beside each version's `model.onnx` in the",
            "export (`kerasdl.tokenizer.load_tokenizer(folder).encode_batch(texts)`), or serve text with",
            "`python -m serving.edge`, which tokenizes for you.",
        ]
    return "\n".join(lines) + "\n"

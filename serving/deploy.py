"""`python -m serving.deploy exports/ --out deploy/`: TF Serving (or Triton) deployment files for every exported model.

Usage:
    python -m serving.deploy exports/ --out deploy/
        [--policy latest|all|specific --versions 1,2]
        [--label stable=1 --label canary=2 | --label cnn:stable=1]
        [--image tensorflow/serving:2.20.0] [--num-batch-threads N]
    python -m serving.deploy exports/ --target triton --out triton_repo/
        [--policy ...] [--max-batch-size 32] [--preferred-batch-sizes 4,8,16,32]
        [--max-queue-delay-us 2000] [--instances 1] [--image nvcr.io/nvidia/tritonserver:...]

Writes into `--out`:
    models.config              ModelServerConfig (text proto): every model, its version
                               policy and version labels; parsed back to validate it.
    batching_parameters.txt    BatchingParameters with TF Serving's CPU starting values.
    monitoring.config          Prometheus metrics at /monitoring/prometheus/metrics.
    docker-compose.yml         tensorflow/serving on 8500 (gRPC) and 8501 (REST),
                               exports mounted read-only at /models.
    docker_run.sh              the same as one `docker run` command line (also printed).
    k8s.yaml                   ConfigMap + Deployment + Service, probes on /v1/models/<name>,
                               Prometheus scrape annotations on the pods.
    prometheus.yml             a Prometheus scrape config: the edge server (`python -m
                               serving.edge`, same path and port) and annotated pods.

Inside the container the export base path is `/models` and this folder is
`/config`, both read-only. `--target triton` writes a Triton model repository
for the ONNX models instead (see `serving.triton`).
"""

import argparse
import os
import shlex
import sys
import tempfile

from serving import protos
from serving.labels import parse_labels
from serving.layout import discover_models
from serving.manifests import (
    CONTAINER_CONFIG,
    CONTAINER_MODELS,
    GRPC_PORT,
    REST_PORT,
    compose_document,
    kubernetes_documents,
    prometheus_scrape_config,
    yaml_dumper,
)
from serving.tfserving_config import (
    MONITORING_CONFIG,
    batching_parameters_text,
    parse_batching_parameters,
    parse_monitoring_config,
)

# The newest TF Serving release with a Docker image when this was written (tensorflow/serving#4129);
# SavedModels from TensorFlow 2.21 use no ops newer than it knows. Override with --image.
DEFAULT_IMAGE = "tensorflow/serving:2.20.0"
POLICIES = ("latest", "all", "specific")


def served_versions(versions, policy, specific=None):
    """The versions TF Serving will load under `policy`."""
    if policy == "latest":
        return versions[-1:]
    if policy == "all":
        return list(versions)
    return [version for version in versions if version in set(specific or [])]


def model_server_config(models, policy="latest", specific_versions=None, labels=None, base_path=CONTAINER_MODELS):
    """Builds and checks the `ModelServerConfig` proto.

    Raises:
        ValueError: a specific version or a label that points at a version not served.

    Example:
    >>> config = model_server_config({"cnn": [1, 2]}, policy="all", labels={"cnn": {"stable": 1}})
    >>> config.model_config_list.config[0].version_labels["stable"]
    1
    """
    if policy not in POLICIES:
        raise ValueError(f"--policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    if policy == "specific" and not specific_versions:
        raise ValueError("--policy specific needs --versions, e.g. --versions 1,2")
    if policy != "specific" and specific_versions:
        raise ValueError("--versions applies only to --policy specific")
    labels = labels or {}
    config = protos.load().model_server_config_pb2.ModelServerConfig()
    for name, versions in models.items():
        entry = config.model_config_list.config.add()
        entry.name = name
        entry.base_path = f"{base_path}/{name}"
        entry.model_platform = "tensorflow"
        if policy == "latest":
            entry.model_version_policy.latest.num_versions = 1
        elif policy == "all":
            entry.model_version_policy.all.SetInParent()
        else:
            missing = [version for version in specific_versions if version not in versions]
            if missing:
                raise ValueError(f"model {name!r} has no version(s) {missing}; it has {versions}")
            entry.model_version_policy.specific.versions.extend(specific_versions)
        served = served_versions(versions, policy, specific_versions)
        for label, version in sorted(labels.get(name, {}).items()):
            if version not in served:
                raise ValueError(
                    f"label {label!r} points at version {version} of {name!r}, which the {policy!r} policy does not "
                    f"serve (served: {served}); use --policy all or --policy specific --versions ..."
                )
            entry.version_labels[label] = version
    return config


def server_flags(labels_present):
    """The `tensorflow_model_server` flags, with the config files under /config."""
    flags = [
        f"--port={GRPC_PORT}",
        f"--rest_api_port={REST_PORT}",
        f"--model_config_file={CONTAINER_CONFIG}/models.config",
        # Re-read models.config once a minute, so a changed policy or label needs no restart.
        "--model_config_file_poll_wait_seconds=60",
        "--enable_batching=true",
        f"--batching_parameters_file={CONTAINER_CONFIG}/batching_parameters.txt",
        f"--monitoring_config_file={CONTAINER_CONFIG}/monitoring.config",
    ]
    if labels_present:
        # At start-up the labels are applied before the versions finish loading;
        # without this flag TF Serving rejects a label whose version is not yet available.
        flags.append("--allow_version_labels_for_unavailable_models=true")
    return flags


def docker_run_command(exports_dir, config_dir, image, flags):
    """The `docker run` argv: ports 8500/8501, exports and config mounted read-only."""
    return [
        "docker", "run", "--rm", "--name", "kerasdl-serving",
        "-p", f"{GRPC_PORT}:{GRPC_PORT}", "-p", f"{REST_PORT}:{REST_PORT}",
        "--mount", f"type=bind,source={exports_dir},target={CONTAINER_MODELS},readonly",
        "--mount", f"type=bind,source={config_dir},target={CONTAINER_CONFIG},readonly",
        "--entrypoint", "tensorflow_model_server",
        image,
        *flags,
    ]


def generate(base_path, out, policy="latest", specific_versions=None, label_values=(), image=DEFAULT_IMAGE, num_batch_threads=None):
    """Writes every deployment file into `out`; returns `{file name: path}` and the docker command line.

    Example:
    >>> files, command = generate("exports", "deploy", policy="all", label_values=["stable=1"])
    """
    import yaml
    from google.protobuf import text_format

    _Dumper = yaml_dumper()
    models = discover_models(base_path)
    labels = parse_labels(label_values, models)
    config = model_server_config(models, policy, specific_versions, labels)
    config_text = text_format.MessageToString(config)
    # Parse the text back: what TF Serving will read must be a valid ModelServerConfig.
    reparsed = text_format.Parse(config_text, protos.load().model_server_config_pb2.ModelServerConfig())
    if reparsed != config:
        raise ValueError("models.config does not round-trip through the ModelServerConfig parser")
    batching_text = batching_parameters_text(num_batch_threads or os.cpu_count() or 1)
    parse_batching_parameters(batching_text)
    parse_monitoring_config(MONITORING_CONFIG)

    exports_dir = os.path.abspath(os.fspath(base_path))
    config_dir = os.path.abspath(os.fspath(out))
    flags = server_flags(any(labels.values()))
    command = docker_run_command(exports_dir, config_dir, image, flags)
    command_line = " ".join(shlex.quote(part) for part in command)
    config_files = {
        "models.config": config_text,
        "batching_parameters.txt": batching_text,
        "monitoring.config": MONITORING_CONFIG,
    }
    documents = {
        **config_files,
        "docker-compose.yml": yaml.dump(
            compose_document(exports_dir, config_dir, image, flags, sorted(models)[0]), Dumper=_Dumper, sort_keys=False
        ),
        "k8s.yaml": yaml.dump_all(kubernetes_documents(models, image, flags, config_files), Dumper=_Dumper, sort_keys=False),
        "docker_run.sh": "#!/bin/sh\n# Serve the exports with TF Serving (generated by python -m serving.deploy).\nexec " + command_line + "\n",
        "prometheus.yml": "# Prometheus scrape config for kerasdl serving (generated by python -m serving.deploy).\n"
        + yaml.dump(prometheus_scrape_config(), Dumper=_Dumper, sort_keys=False),
    }
    os.makedirs(config_dir, exist_ok=True)
    written = {}
    for name, text in documents.items():
        written[name] = _write_atomically(os.path.join(config_dir, name), text)
    os.chmod(written["docker_run.sh"], 0o755)
    return written, command_line


def _write_atomically(path, text):
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    return path


def main(argv=None):
    from serving import triton

    parser = argparse.ArgumentParser(prog="python -m serving.deploy", description=__doc__.splitlines()[0])
    parser.add_argument("base_path", help="the export base path, e.g. exports/")
    parser.add_argument("--target", choices=("tfserving", "triton"), default="tfserving",
                        help="tfserving: TF Serving files for the SavedModels; triton: a Triton repository for the ONNX models")
    parser.add_argument("--out", default=None, help="folder for the generated files (default: deploy/, or triton_repo/ for --target triton)")
    parser.add_argument("--policy", choices=POLICIES, default="latest", help="which versions the server loads")
    parser.add_argument("--versions", default=None, help="comma-separated versions for --policy specific")
    parser.add_argument("--label", action="append", default=[], help="version label: [model:]label=version (repeatable; TF Serving only)")
    parser.add_argument("--image", default=None, help=f"the server image (default {DEFAULT_IMAGE}, or {triton.DEFAULT_IMAGE} for Triton)")
    parser.add_argument("--num-batch-threads", type=int, default=None, help="TF Serving; default: this machine's CPU count")
    parser.add_argument("--max-batch-size", type=int, default=triton.DEFAULT_MAX_BATCH_SIZE, help="Triton: the largest batch dynamic batching forms")
    parser.add_argument("--preferred-batch-sizes", default=None, help="Triton: comma-separated batch sizes to aim for (default 4,8,16,32)")
    parser.add_argument("--max-queue-delay-us", type=int, default=triton.DEFAULT_MAX_QUEUE_DELAY_US, help="Triton: how long a request may wait for a batch")
    parser.add_argument("--instances", type=int, default=triton.DEFAULT_INSTANCES, help="Triton: model instances on the CPU")
    args = parser.parse_args(argv)
    try:
        versions = _integers(args.versions, "--versions")
        if args.target == "triton":
            if args.label:
                raise ValueError("--label applies to TF Serving only; Triton has no version labels")
            written, command_line = triton.write_repository(
                args.base_path, args.out or "triton_repo", args.policy, versions, args.max_batch_size,
                _integers(args.preferred_batch_sizes, "--preferred-batch-sizes"), args.max_queue_delay_us,
                args.instances, args.image or triton.DEFAULT_IMAGE,
            )
            server = "Triton"
        else:
            written, command_line = generate(
                args.base_path, args.out or "deploy", args.policy, versions, args.label, args.image or DEFAULT_IMAGE, args.num_batch_threads
            )
            written, server = list(written.values()), "TF Serving"
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    print(f"run {server} with:")
    print(command_line)
    return 0


def _integers(text, flag):
    if not text:
        return None
    try:
        return [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated integers, got {text!r}") from None


if __name__ == "__main__":
    sys.exit(main())

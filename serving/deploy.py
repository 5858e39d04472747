"""`python -m serving.deploy exports/ --out deploy/`: TF Serving deployment files for every exported model.

Usage:
    python -m serving.deploy exports/ --out deploy/
        [--policy latest|all|specific --versions 1,2]
        [--label stable=1 --label canary=2 | --label cnn:stable=1]
        [--image tensorflow/serving:2.20.0] [--num-batch-threads N]

Writes into `--out`:
    models.config              ModelServerConfig (text proto): every model, its version
                               policy and version labels; parsed back to validate it.
    batching_parameters.txt    BatchingParameters with TF Serving's CPU starting values.
    monitoring.config          Prometheus metrics at /monitoring/prometheus/metrics.
    docker-compose.yml         tensorflow/serving on 8500 (gRPC) and 8501 (REST),
                               exports mounted read-only at /models.
    docker_run.sh              the same as one `docker run` command line (also printed).
    k8s.yaml                   ConfigMap + Deployment + Service, probes on /v1/models/<name>.

Inside the container the export base path is `/models` and this folder is
`/config`, both read-only.
"""

import argparse
import os
import shlex
import sys
import tempfile

from serving import protos
from serving.labels import parse_labels

# The newest TF Serving release with a Docker image when this was written (tensorflow/serving#4129);
# SavedModels from TensorFlow 2.21 use no ops newer than it knows. Override with --image.
DEFAULT_IMAGE = "tensorflow/serving:2.20.0"
CONTAINER_MODELS = "/models"
CONTAINER_CONFIG = "/config"
GRPC_PORT = 8500
REST_PORT = 8501
PROMETHEUS_PATH = "/monitoring/prometheus/metrics"
POLICIES = ("latest", "all", "specific")


def discover_models(base_path):
    """Returns `{name: [versions]}` for the models under the export base path (integer version folders)."""
    base_path = os.fspath(base_path)
    if not os.path.isdir(base_path):
        raise ValueError(f"export base path {base_path} is not a folder; export a model first (python -m export.run)")
    models = {}
    for name in sorted(os.listdir(base_path)):
        folder = os.path.join(base_path, name)
        if name.startswith(".") or not os.path.isdir(folder):
            continue
        versions = sorted(
            int(entry)
            for entry in os.listdir(folder)
            if entry.isdigit() and os.path.isfile(os.path.join(folder, entry, "saved_model.pb"))
        )
        if versions:
            models[name] = versions
    if not models:
        raise ValueError(f"no SavedModel versions under {base_path} (expected <name>/<version>/saved_model.pb)")
    return models


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


def batching_parameters_text(num_batch_threads, max_batch_size=1024, batch_timeout_micros=0):
    """The `--batching_parameters_file` content: TF Serving's CPU-only starting point, each value explained.

    Source: TF Serving's batching guide, "Performance Tuning" ->
    "CPU-only: One Approach" and "Overall Guidelines"
    (https://github.com/tensorflow/serving/blob/master/tensorflow_serving/batching/README.md).
    """
    return f"""# TF Serving batching parameters (BatchingParameters text proto), used with --enable_batching.
# Starting values for a CPU-only server from TF Serving's batching guide
# (tensorflow_serving/batching/README.md, "Performance Tuning": "CPU-only: One
# Approach" and "Overall Guidelines"); tune them under your own load.

# The guide: "num_batch_threads equal to the number of CPU cores" - one batch per core in parallel.
num_batch_threads {{ value: {num_batch_threads} }}

# The guide: "max_batch_size to infinity" on CPU; a finite bound keeps one batch's memory in check.
max_batch_size {{ value: {max_batch_size} }}

# The guide: start at 0, then "experiment with batch_timeout_micros values in the 1-10
# millisecond (1000-10000 microsecond) range, while keeping in mind that 0 may be the optimal value".
batch_timeout_micros {{ value: {batch_timeout_micros} }}

# The guide, for online serving: set max_enqueued_batches "equal to num_batch_threads to minimize
# queueing delay at a given server while keeping it busy".
max_enqueued_batches {{ value: {num_batch_threads} }}
"""


MONITORING_CONFIG = f"""# TF Serving monitoring (MonitoringConfig text proto), used with --monitoring_config_file.
# Prometheus scrapes the REST port ({REST_PORT}) at this path.
prometheus_config {{
  enable: true,
  path: "{PROMETHEUS_PATH}"
}}
"""


def _message_class(name, fields, dependencies=()):
    """A protobuf message class built at run time (for protos that tensorflow-serving-api does not ship)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    pool = descriptor_pool.DescriptorPool()
    for dependency in dependencies:
        dependency_proto = descriptor_pb2.FileDescriptorProto()
        dependency.CopyToProto(dependency_proto)
        pool.Add(dependency_proto)
    file_proto = descriptor_pb2.FileDescriptorProto(name=f"kerasdl_{name}.proto", package="kerasdl.check", syntax="proto3")
    file_proto.dependency.extend(dependency.name for dependency in dependencies)
    for message_name, message_fields in fields.items():
        message = file_proto.message_type.add(name=message_name)
        for number, (field_name, field_type, type_name) in enumerate(message_fields, start=1):
            field = message.field.add(name=field_name, number=number, label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
            field.type = field_type
            if type_name:
                field.type_name = type_name
    pool.Add(file_proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"kerasdl.check.{name}"))


def parse_batching_parameters(text):
    """Parses batching parameters text against TF Serving's `BatchingParameters` fields (raises on errors)."""
    from google.protobuf import descriptor_pb2, text_format, wrappers_pb2

    kind = descriptor_pb2.FieldDescriptorProto
    int64_value = (kind.TYPE_MESSAGE, ".google.protobuf.Int64Value")
    # Field order gives the numbers 1-4 of session_bundle_config.proto's BatchingParameters.
    message_class = _message_class(
        "BatchingParameters",
        {
            "BatchingParameters": [
                ("max_batch_size", *int64_value),
                ("batch_timeout_micros", *int64_value),
                ("max_enqueued_batches", *int64_value),
                ("num_batch_threads", *int64_value),
            ]
        },
        dependencies=(wrappers_pb2.DESCRIPTOR,),
    )
    return text_format.Parse(text, message_class())


def parse_monitoring_config(text):
    """Parses monitoring config text against TF Serving's `MonitoringConfig` fields (raises on errors)."""
    from google.protobuf import descriptor_pb2, text_format

    kind = descriptor_pb2.FieldDescriptorProto
    message_class = _message_class(
        "MonitoringConfig",
        {
            "PrometheusConfig": [("enable", kind.TYPE_BOOL, None), ("path", kind.TYPE_STRING, None)],
            "MonitoringConfig": [("prometheus_config", kind.TYPE_MESSAGE, ".kerasdl.check.PrometheusConfig")],
        },
    )
    return text_format.Parse(text, message_class())


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


def compose_document(exports_dir, config_dir, image, flags, first_model):
    return {
        "services": {
            "tfserving": {
                "image": image,
                # The image's entrypoint script adds --model_name/--model_base_path; the
                # config file replaces them, so the server binary is called directly.
                "entrypoint": ["tensorflow_model_server"],
                "command": flags,
                "ports": [f"{GRPC_PORT}:{GRPC_PORT}", f"{REST_PORT}:{REST_PORT}"],
                "volumes": [
                    {"type": "bind", "source": exports_dir, "target": CONTAINER_MODELS, "read_only": True},
                    {"type": "bind", "source": config_dir, "target": CONTAINER_CONFIG, "read_only": True},
                ],
                "restart": "unless-stopped",
                # The image has no curl or wget, so readiness is left to the caller (or k8s.yaml's probes)
                # and `docker compose ps` reports the container state only.
                "labels": {"kerasdl.status_url": f"http://localhost:{REST_PORT}/v1/models/{first_model}"},
            }
        }
    }


def kubernetes_documents(models, image, flags, config_files, replicas=1):
    first_model = sorted(models)[0]
    labels = {"app": "kerasdl-serving"}
    probe_path = f"/v1/models/{first_model}"
    container = {
        "name": "tfserving",
        "image": image,
        "command": ["tensorflow_model_server"],
        "args": flags,
        "ports": [{"name": "grpc", "containerPort": GRPC_PORT}, {"name": "http", "containerPort": REST_PORT}],
        "volumeMounts": [
            {"name": "models", "mountPath": CONTAINER_MODELS, "readOnly": True},
            {"name": "config", "mountPath": CONTAINER_CONFIG, "readOnly": True},
        ],
        # The model status endpoint answers 200 once a version is AVAILABLE (readiness),
        # and keeps answering while the server is healthy (liveness).
        "readinessProbe": {"httpGet": {"path": probe_path, "port": REST_PORT}, "initialDelaySeconds": 5, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": probe_path, "port": REST_PORT}, "initialDelaySeconds": 30, "periodSeconds": 15, "failureThreshold": 4},
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "4Gi"}},
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "kerasdl-serving-config", "labels": labels},
            "data": config_files,
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "kerasdl-serving", "labels": labels},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [container],
                        "volumes": [
                            # The exports live on a volume that the training/export job fills.
                            {"name": "models", "persistentVolumeClaim": {"claimName": "kerasdl-exports", "readOnly": True}},
                            {"name": "config", "configMap": {"name": "kerasdl-serving-config"}},
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kerasdl-serving", "labels": labels},
            "spec": {
                "selector": labels,
                "ports": [
                    {"name": "grpc", "port": GRPC_PORT, "targetPort": GRPC_PORT},
                    {"name": "http", "port": REST_PORT, "targetPort": REST_PORT},
                ],
            },
        },
    ]


def generate(base_path, out, policy="latest", specific_versions=None, label_values=(), image=DEFAULT_IMAGE, num_batch_threads=None):
    """Writes every deployment file into `out`; returns `{file name: path}` and the docker command line.

    Example:
    >>> files, command = generate("exports", "deploy", policy="all", label_values=["stable=1"])
    """
    import yaml
    from google.protobuf import text_format

    _Dumper = _dumper()
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
    }
    os.makedirs(config_dir, exist_ok=True)
    written = {}
    for name, text in documents.items():
        written[name] = _write_atomically(os.path.join(config_dir, name), text)
    os.chmod(written["docker_run.sh"], 0o755)
    return written, command_line


def _block_strings(dumper, value):
    # Multi-line values (the config files inside the ConfigMap) read best as YAML block literals.
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


def _dumper():
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_representer(str, _block_strings)
    return Dumper


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
    parser = argparse.ArgumentParser(prog="python -m serving.deploy", description=__doc__.splitlines()[0])
    parser.add_argument("base_path", help="the export base path, e.g. exports/")
    parser.add_argument("--out", default="deploy", help="folder for the generated files")
    parser.add_argument("--policy", choices=POLICIES, default="latest", help="which versions TF Serving loads")
    parser.add_argument("--versions", default=None, help="comma-separated versions for --policy specific")
    parser.add_argument("--label", action="append", default=[], help="version label: [model:]label=version (repeatable)")
    parser.add_argument("--image", default=DEFAULT_IMAGE, help="the TF Serving container image")
    parser.add_argument("--num-batch-threads", type=int, default=None, help="default: this machine's CPU count")
    args = parser.parse_args(argv)
    try:
        versions = None
        if args.versions:
            try:
                versions = [int(item) for item in args.versions.split(",") if item.strip()]
            except ValueError:
                raise ValueError(f"--versions must be comma-separated integers, got {args.versions!r}") from None
        written, command_line = generate(args.base_path, args.out, args.policy, versions, args.label, args.image, args.num_batch_threads)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for name, path in written.items():
        print(f"wrote {path}")
    print("run TF Serving with:")
    print(command_line)
    return 0


if __name__ == "__main__":
    sys.exit(main())

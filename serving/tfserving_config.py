"""TF Serving's batching and monitoring config files, and their parse-back checks.

`tensorflow-serving-api` does not ship the `BatchingParameters` and
`MonitoringConfig` protos, so their fields are declared here at run time
(`_message_class`) to parse the generated text exactly as TF Serving will.
"""

from serving.manifests import PROMETHEUS_PATH, REST_PORT


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

"""The container manifests `serving.deploy` writes: docker compose, Kubernetes, Prometheus scrape config.

Split from `serving.deploy` so that each module stays readable; the TF Serving
flags and config files they carry are built there.
"""

CONTAINER_MODELS = "/models"
CONTAINER_CONFIG = "/config"
GRPC_PORT = 8500
REST_PORT = 8501
PROMETHEUS_PATH = "/monitoring/prometheus/metrics"


def prometheus_scrape_config(edge_target=f"localhost:{REST_PORT}"):
    """A Prometheus config that scrapes the edge server and, in Kubernetes, the annotated serving pods.

    TF Serving (with monitoring.config) and `python -m serving.edge` both serve
    metrics on the REST port at PROMETHEUS_PATH, so one job shape fits both.
    """
    return {
        "global": {"scrape_interval": "15s"},
        "scrape_configs": [
            {
                "job_name": "kerasdl-edge",
                "metrics_path": PROMETHEUS_PATH,
                "static_configs": [{"targets": [edge_target]}],
            },
            {
                # Pods that carry the prometheus.io/* annotations k8s.yaml puts on the Deployment.
                "job_name": "kerasdl-serving-pods",
                "kubernetes_sd_configs": [{"role": "pod"}],
                "relabel_configs": [
                    {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"], "action": "keep", "regex": "true"},
                    {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"], "action": "replace",
                     "target_label": "__metrics_path__", "regex": "(.+)"},
                    {"source_labels": ["__address__", "__meta_kubernetes_pod_annotation_prometheus_io_port"], "action": "replace",
                     "regex": "([^:]+)(?::\\d+)?;(\\d+)", "replacement": "$1:$2", "target_label": "__address__"},
                ],
            },
        ],
    }


PROMETHEUS_ANNOTATIONS = {"prometheus.io/scrape": "true", "prometheus.io/port": str(REST_PORT), "prometheus.io/path": PROMETHEUS_PATH}


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
                    "metadata": {"labels": labels, "annotations": dict(PROMETHEUS_ANNOTATIONS)},
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


def _block_strings(dumper, value):
    # Multi-line values (the config files inside the ConfigMap) read best as YAML block literals.
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


def yaml_dumper():
    """A YAML SafeDumper that writes multi-line strings as block literals."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_representer(str, _block_strings)
    return Dumper

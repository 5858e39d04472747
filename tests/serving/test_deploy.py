"""`python -m serving.deploy`: the generated TF Serving files parse and say what they should."""

import shlex
import subprocess
import sys

import pytest
import yaml
from google.protobuf import text_format

from serving import deploy, protos


@pytest.fixture(scope="module")
def two_version_exports(exports, tmp_path_factory):
    """exports/cnn with versions 1 and 2 (SavedModel files only matter for discovery)."""
    base = tmp_path_factory.mktemp("deploy") / "exports"
    for version in (1, 2):
        folder = base / "cnn" / str(version)
        folder.mkdir(parents=True)
        (folder / "saved_model.pb").write_bytes((exports / "cnn" / "1" / "saved_model.pb").read_bytes())
    (base / "cnn" / ".tmp-3-abc").mkdir()  # Half-written export: ignored.
    (base / "text" / "1").mkdir(parents=True)  # ONNX-only model: TF Serving cannot serve it.
    (base / "text" / "1" / "model.onnx").write_bytes(b"")
    return base


def _config(path):
    return text_format.Parse(path.read_text(), protos.load().model_server_config_pb2.ModelServerConfig())


def test_cli_writes_valid_files(two_version_exports, tmp_path):
    out = tmp_path / "deploy"
    result = subprocess.run(
        [sys.executable, "-m", "serving.deploy", str(two_version_exports), "--out", str(out),
         "--policy", "all", "--label", "stable=1", "--label", "canary=2", "--num-batch-threads", "4"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    config = _config(out / "models.config")
    (entry,) = config.model_config_list.config
    assert (entry.name, entry.base_path, entry.model_platform) == ("cnn", "/models/cnn", "tensorflow")
    assert entry.model_version_policy.WhichOneof("policy_choice") == "all"
    assert dict(entry.version_labels) == {"stable": 1, "canary": 2}

    batching = deploy.parse_batching_parameters((out / "batching_parameters.txt").read_text())
    assert batching.num_batch_threads.value == 4
    assert batching.max_enqueued_batches.value == 4
    assert batching.batch_timeout_micros.value == 0
    assert batching.max_batch_size.value == 1024
    batching_text = (out / "batching_parameters.txt").read_text()
    assert "CPU-only: One" in batching_text and batching_text.count("# The guide") == 4

    monitoring = deploy.parse_monitoring_config((out / "monitoring.config").read_text())
    assert monitoring.prometheus_config.enable is True
    assert monitoring.prometheus_config.path == "/monitoring/prometheus/metrics"

    compose = yaml.safe_load((out / "docker-compose.yml").read_text())
    service = compose["services"]["tfserving"]
    assert service["image"].startswith("tensorflow/serving:")
    assert service["ports"] == ["8500:8500", "8501:8501"]
    models_volume, config_volume = service["volumes"]
    assert models_volume == {"type": "bind", "source": str(two_version_exports), "target": "/models", "read_only": True}
    assert config_volume["source"] == str(out) and config_volume["read_only"] is True
    flags = service["command"]
    for flag in (
        "--model_config_file=/config/models.config",
        "--enable_batching=true",
        "--batching_parameters_file=/config/batching_parameters.txt",
        "--monitoring_config_file=/config/monitoring.config",
        "--allow_version_labels_for_unavailable_models=true",
        "--port=8500",
        "--rest_api_port=8501",
    ):
        assert flag in flags

    command = shlex.split(result.stdout.strip().splitlines()[-1])
    assert command[:3] == ["docker", "run", "--rm"]
    assert f"type=bind,source={two_version_exports},target=/models,readonly" in command
    assert "-p" in command and "8500:8500" in command and "8501:8501" in command
    assert command[command.index("--entrypoint") + 2] == service["image"]
    assert command[-len(flags):] == flags
    assert (out / "docker_run.sh").read_text().splitlines()[-1] == "exec " + result.stdout.strip().splitlines()[-1]

    configmap, deployment, k8s_service = yaml.safe_load_all((out / "k8s.yaml").read_text())
    assert [configmap["kind"], deployment["kind"], k8s_service["kind"]] == ["ConfigMap", "Deployment", "Service"]
    assert _config_text_equal(configmap["data"]["models.config"], config)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v1/models/cnn", "port": 8501}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v1/models/cnn", "port": 8501}
    assert container["args"] == flags
    assert all(mount["readOnly"] for mount in container["volumeMounts"])
    assert sorted(port["port"] for port in k8s_service["spec"]["ports"]) == [8500, 8501]
    assert k8s_service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def _config_text_equal(text, config):
    return text_format.Parse(text, protos.load().model_server_config_pb2.ModelServerConfig()) == config


def test_latest_policy_without_labels_omits_the_label_flag(two_version_exports, tmp_path):
    written, command_line = deploy.generate(two_version_exports, tmp_path, policy="latest", num_batch_threads=2)
    (entry,) = _config(tmp_path / "models.config").model_config_list.config
    assert entry.model_version_policy.latest.num_versions == 1
    assert "--allow_version_labels_for_unavailable_models" not in command_line


def test_specific_policy_lists_the_versions(two_version_exports, tmp_path):
    deploy.generate(two_version_exports, tmp_path, policy="specific", specific_versions=[2], label_values=["cnn:stable=2"])
    (entry,) = _config(tmp_path / "models.config").model_config_list.config
    assert list(entry.model_version_policy.specific.versions) == [2]
    assert dict(entry.version_labels) == {"stable": 2}


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--label", "stable=1"], "label 'stable' points at version 1 of 'cnn', which the 'latest' policy does not serve"),
        (["--policy", "specific", "--versions", "7"], "model 'cnn' has no version(s) [7]"),
        (["--policy", "specific"], "--policy specific needs --versions"),
        (["--label", "nope:stable=1"], "no model 'nope' under the export base path"),
        (["--label", "stable"], "--label must look like [model:]label=version"),
    ],
)
def test_bad_arguments_fail_with_one_line(two_version_exports, tmp_path, arguments, message):
    result = subprocess.run(
        [sys.executable, "-m", "serving.deploy", str(two_version_exports), "--out", str(tmp_path / "d"), *arguments],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {result.stderr.strip()[7:]}"]
    assert message in result.stderr
    assert not (tmp_path / "d" / "models.config").exists()


def test_prometheus_scrape_config_and_kubernetes_annotations(two_version_exports, tmp_path):
    written, _ = deploy.generate(two_version_exports, tmp_path, policy="latest", num_batch_threads=2)
    config = yaml.safe_load((tmp_path / "prometheus.yml").read_text())
    edge, pods = config["scrape_configs"]
    assert edge["metrics_path"] == "/monitoring/prometheus/metrics"
    assert edge["static_configs"] == [{"targets": ["localhost:8501"]}]
    assert pods["kubernetes_sd_configs"] == [{"role": "pod"}]
    keep = pods["relabel_configs"][0]
    assert (keep["action"], keep["regex"], keep["source_labels"]) == ("keep", "true", ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"])
    import re

    address = pods["relabel_configs"][2]
    assert re.fullmatch(address["regex"], "10.0.0.7:8500;8501").expand(address["replacement"].replace("$", "\\")) == "10.0.0.7:8501"
    _, deployment, _ = yaml.safe_load_all((tmp_path / "k8s.yaml").read_text())
    assert deployment["spec"]["template"]["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8501",
        "prometheus.io/path": "/monitoring/prometheus/metrics",
    }

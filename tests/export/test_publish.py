"""Version choice, atomic publishing, refusals, and the CLI's error lines and exit codes."""

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from export.errors import ExportError
from export.publish import choose_version, existing_versions, staged_version
from export.run import main

REPOSITORY = Path(__file__).resolve().parents[2]


def _entries(folder):
    return sorted(entry.name for entry in Path(folder).iterdir()) if Path(folder).exists() else []


def test_next_version_ignores_non_integer_folders(tmp_path):
    for name in ("1", "2", "10", "latest", ".tmp-11-abc"):
        (tmp_path / name).mkdir()
    assert existing_versions(tmp_path) == [1, 2, 10]
    assert choose_version(tmp_path) == 11
    assert choose_version(tmp_path / "missing") == 1
    assert choose_version(tmp_path, version=5) == 5
    with pytest.raises(ExportError, match=r"10 already exists; pass --force"):
        choose_version(tmp_path, version=10)
    assert choose_version(tmp_path, version=10, force=True) == 10
    with pytest.raises(ExportError, match="positive integer"):
        choose_version(tmp_path, version=0)


def test_the_next_export_removes_the_staging_folders_of_killed_exporters(tmp_path):
    """A killed export leaves `.tmp-<version>-<pid>-*`; the next one removes it unless its process still runs."""
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    abandoned = tmp_path / f".tmp-4-{int(ended.stdout)}-k2j9x1"
    running = tmp_path / f".tmp-5-{os.getpid()}-a8b7c6"  # a concurrent export (this process runs)
    unknown = tmp_path / ".tmp-6-abc"  # no process id: left alone
    for folder in (abandoned, running, unknown):
        (folder / "variables").mkdir(parents=True)
        (folder / "saved_model.pb").write_text("half")

    with staged_version(tmp_path, 7) as staging:
        assert re.fullmatch(rf"\.tmp-7-{os.getpid()}-\w+", staging.name)
        (staging / "saved_model.pb").write_text("x")

    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(["7", running.name, unknown.name])


def test_staged_version_renames_only_on_success(tmp_path):
    with staged_version(tmp_path, 3) as staging:
        assert staging.parent == tmp_path and staging.name.startswith(".tmp-3-")
        (staging / "saved_model.pb").write_text("x")
        assert _entries(tmp_path) == [staging.name]  # not visible as a version yet
    assert _entries(tmp_path) == ["3"]
    assert (tmp_path / "3" / "saved_model.pb").read_text() == "x"

    with pytest.raises(RuntimeError, match="boom"):
        with staged_version(tmp_path, 4) as staging:
            (staging / "saved_model.pb").write_text("half")
            raise RuntimeError("boom")
    assert _entries(tmp_path) == ["3"]


def test_staged_version_replaces_only_with_force(tmp_path):
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "old").write_text("old")
    with pytest.raises(ExportError, match="already exists"):
        with staged_version(tmp_path, 1) as staging:
            (staging / "new").write_text("new")
    assert _entries(tmp_path / "1") == ["old"] and _entries(tmp_path) == ["1"]
    with staged_version(tmp_path, 1, force=True) as staging:
        (staging / "new").write_text("new")
    assert _entries(tmp_path / "1") == ["new"] and _entries(tmp_path) == ["1"]


def test_refuses_to_overwrite_without_force_and_force_replaces(mlp_run, tmp_path, capsys):
    base = tmp_path / "exports"
    assert main([str(mlp_run), "--format", "onnx", "--base", str(base)]) == 0
    card_path = base / "mlp" / "1" / "assets.extra" / "model_card.json"
    first = json.loads(card_path.read_text())
    (base / "mlp" / "1" / "marker").write_text("from the first export")
    capsys.readouterr()

    assert main([str(mlp_run), "--format", "onnx", "--base", str(base), "--version", "1"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "already exists; pass --force" in error and "Traceback" not in error
    assert (base / "mlp" / "1" / "marker").exists()

    assert main([str(mlp_run), "--format", "onnx", "--base", str(base), "--version", "1", "--force"]) == 0
    assert not (base / "mlp" / "1" / "marker").exists()
    assert json.loads(card_path.read_text())["formats"] == first["formats"] == ["onnx"]
    assert _entries(base / "mlp") == ["1"]

    # Without --version the next integer is chosen.
    assert main([str(mlp_run), "--format", "onnx", "--base", str(base), "--name", "features-model"]) == 0
    assert main([str(mlp_run), "--format", "onnx", "--base", str(base), "--name", "features-model"]) == 0
    assert _entries(base / "features-model") == ["1", "2"]


def test_parity_failure_publishes_nothing(mlp_run, tmp_path, capsys, monkeypatch):
    import export.formats

    # A negative tolerance makes every comparison fail, as a real mismatch would.
    monkeypatch.setattr(export.formats, "tolerance", lambda metadata, artifact_format: -1.0)
    base = tmp_path / "exports"
    assert main([str(mlp_run), "--base", str(base)]) == 1
    captured = capsys.readouterr()
    assert "FAIL" in captured.out  # the parity table is printed
    assert captured.err.startswith("verification failed: parity failed for savedmodel/serving_default, onnx/probabilities")
    assert _entries(base / "mlp") == []  # no version folder, no temporary folder


def test_exception_during_export_publishes_nothing(mlp_run, tmp_path, capsys, monkeypatch):
    import export.formats.onnx

    def broken(*args, **kwargs):
        raise RuntimeError("converter crashed\nsecond line")

    monkeypatch.setattr(export.formats.onnx, "export_onnx", broken)
    base = tmp_path / "exports"
    assert main([str(mlp_run), "--base", str(base)]) == 1
    error = capsys.readouterr().err
    assert error == "error: export failed (RuntimeError: converter crashed); nothing published\n"
    assert _entries(base / "mlp") == []


def test_int8_over_the_limit_is_left_out_and_fp32_published(mlp_run, tmp_path, capsys):
    base = tmp_path / "exports"
    assert main([str(mlp_run), "--quantize", "int8", "--max-accuracy-drop", "-1", "--base", str(base)]) == 0
    captured = capsys.readouterr()
    assert "int8 (dynamic)" in captured.out and "agreement with fp32 100.0 %" in captured.out
    card = json.loads((base / "mlp" / "1" / "assets.extra" / "model_card.json").read_text())
    reason = card["int8"]["onnx"]["reason"]
    assert re.fullmatch(r"accuracy drop 0\.00 points \(95 % interval \[-(\d\.\d\d), \1\]\) on 64 held-out examples "
                        r"exceeds --max-accuracy-drop -1\.0", reason), reason
    assert (f"onnx int8 left out: {reason}; publishing the verified fp32 artifacts without model.int8.onnx "
            "(--require-int8 makes this an error)") in captured.out
    version = base / "mlp" / "1"
    assert (version / "model.onnx").is_file() and (version / "saved_model.pb").is_file()
    assert not (version / "model.int8.onnx").exists()
    assert card["int8"] == {"onnx": {"file": "model.int8.onnx", "published": False, "reason": reason}}
    assert card["quantization"]["accepted"] is False and card["quantization"]["comparison"]["examples"] == 64


def test_require_int8_publishes_nothing_when_int8_is_left_out(mlp_run, tmp_path, capsys):
    base = tmp_path / "exports"
    assert main([str(mlp_run), "--require-int8", "--max-accuracy-drop", "-1", "--base", str(base)]) == 1
    error = capsys.readouterr().err
    assert re.fullmatch(r"verification failed: int8 left out \(onnx: accuracy drop 0\.00 points \(95 % interval "
                        r"\[-\d\.\d\d, \d\.\d\d\]\) on 64 held-out examples exceeds --max-accuracy-drop -1\.0\) and "
                        r"--require-int8 was given; nothing published\n", error), error
    assert _entries(base / "mlp") == []


def test_an_accepted_int8_is_published_and_the_card_says_so(mlp_run, tmp_path):
    from export.run import export_model

    result = export_model(mlp_run, formats=["onnx"], base=tmp_path / "exports", quantize="int8", require_int8=True,
                          log=lambda line: None)
    assert (result.version_dir / "model.int8.onnx").is_file()
    assert result.card["int8"] == {"onnx": {"file": "model.int8.onnx", "published": True, "reason": None}}


def test_the_int8_gate_judges_every_held_out_example_the_run_kept(mlp_run, tmp_path):
    # 264 held-out examples: parity and warmup use the first 64, the int8 gate all 264.
    import numpy as np

    from export.run import export_model

    run_dir = tmp_path / "run"
    shutil.copytree(mlp_run, run_dir)
    with np.load(mlp_run / "data" / "calibration.npz") as calibration, np.load(mlp_run / "data" / "validation.npz") as validation:
        x = np.concatenate([validation["x"], calibration["x"]])
        y = np.concatenate([validation["y"], calibration["y"]])
    np.savez(run_dir / "data" / "validation.npz", x=x, y=y)
    lines = []
    result = export_model(run_dir, formats=["onnx"], base=tmp_path / "exports", quantize="int8", log=lines.append)
    assert [row.examples for row in result.parity] == [64]
    comparison = result.card["quantization"]["comparison"]
    assert len(x) == 264 and comparison["examples"] == 264
    low, high = comparison["accuracy_drop_interval_points"]
    assert low <= comparison["accuracy_drop_points"] <= high and high - low < 5.0  # narrower than 64 examples allow
    assert any("on 264 held-out examples" in line for line in lines)


def test_usage_errors_are_one_line_with_exit_code_2(mlp_run, tmp_path, capsys):
    cases = [
        ([str(tmp_path / "missing")], "no such file or directory"),
        ([str(tmp_path)], "no model.keras in this folder"),
        ([str(mlp_run), "--format", "tflite"], "unknown format tflite"),
        ([str(mlp_run), "--format", "savedmodel", "--quantize", "int8"], "add onnx to --format"),
        ([str(mlp_run), "--quantize", "int4"], "invalid choice: 'int4'"),
    ]
    for argv, message in cases:
        try:
            code = main(argv + ["--base", str(tmp_path / "exports")])
        except SystemExit as exit_:  # argparse's own errors
            code = exit_.code
        assert code == 2, argv
        error = capsys.readouterr().err
        assert message in error and error.count("\n") == 1 and "Traceback" not in error, (argv, error)
    assert not (tmp_path / "exports").exists()


def test_a_keras_file_without_metadata_is_not_a_kerasdl_model(tmp_path, capsys):
    import keras

    inputs = keras.Input(shape=(3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.save(tmp_path / "plain.keras")
    (tmp_path / "text.keras").write_text("not a zip")
    assert main([str(tmp_path / "plain.keras"), "--base", str(tmp_path / "exports")]) == 2
    assert "not a kerasdl model (its kerasdl.json metadata lacks modality, class_names, input)" in capsys.readouterr().err
    assert main([str(tmp_path / "text.keras"), "--base", str(tmp_path / "exports")]) == 2
    assert "not a .keras file (not a zip archive)" in capsys.readouterr().err


def test_augmentation_layers_are_refused(tmp_path, capsys, helpers):
    import keras
    import numpy as np

    inputs = keras.Input(shape=(8, 8, 1), name="inputs")
    x = keras.layers.RandomFlip(name="random_flip")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="logits")(keras.layers.Flatten()(x)))
    metadata = {"model": "cnn", "modality": "image", "class_names": ["a", "b"],
                "input": {"shape": [8, 8, 1], "dtype": "float32"}}
    data = (np.zeros((4, 8, 8, 1), "float32"), np.zeros(4, "int64"))
    run_dir = helpers.write_run(tmp_path / "run", model, metadata, data, data)
    assert main([str(run_dir), "--base", str(tmp_path / "exports")]) == 2
    assert "augmentation layer 'random_flip' (RandomFlip)" in capsys.readouterr().err


def test_bare_keras_file_exports_with_synthetic_examples(mlp_run, tmp_path):
    import shutil

    from export.run import export_model

    bare = tmp_path / "elsewhere" / "mlp.keras"
    bare.parent.mkdir()
    shutil.copy(mlp_run / "model.keras", bare)
    result = export_model(bare, base=tmp_path / "exports", log=lambda line: None)
    assert result.card["parity"]["examples_origin"] == "synthetic"
    assert result.card["metrics"] is None and result.card["training_run"]["model_file"] == str(bare)
    assert all(row.ok and row.examples == 8 for row in result.parity)


def test_cli_subprocess_prints_no_traceback(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "export.run", str(tmp_path / "nothing.keras")],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'nothing.keras'}: no such file or directory; pass a run directory or a .keras file"
    ]



def _modes(folder):
    """`{relative path: permission bits}` of everything under `folder`, itself as '.'."""
    modes = {".": stat.S_IMODE(os.stat(folder).st_mode)}
    for path in Path(folder).rglob("*"):
        modes[str(path.relative_to(folder))] = stat.S_IMODE(os.stat(path).st_mode)
    return modes


def test_published_versions_are_readable_by_other_users_whatever_the_umask(tmp_path):
    # A TF Serving container runs as another user: 0700 folders (mkdtemp's) would hide the model.
    previous = os.umask(0o077)
    try:
        with staged_version(tmp_path / "exports" / "cnn", 1) as staging:
            (staging / "variables").mkdir()
            (staging / "variables" / "variables.index").write_text("index")
            (staging / "saved_model.pb").write_text("graph")
    finally:
        os.umask(previous)
    modes = _modes(tmp_path / "exports" / "cnn" / "1")
    assert modes == {".": 0o755, "variables": 0o755, "variables/variables.index": 0o644, "saved_model.pb": 0o644}
    assert stat.S_IMODE(os.stat(tmp_path / "exports" / "cnn").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(tmp_path / "exports").st_mode) == 0o755


def test_an_exported_version_is_0755_and_0644(mlp_run, tmp_path):
    from export.run import export_model

    previous = os.umask(0o077)
    try:
        result = export_model(mlp_run, base=tmp_path / "exports", log=lambda line: None)
    finally:
        os.umask(previous)
    modes = _modes(result.version_dir)
    assert {"saved_model.pb", "model.onnx", "variables", "assets.extra/model_card.json"} <= set(modes)
    for name, mode in modes.items():
        expected = 0o755 if (result.version_dir / name).is_dir() else 0o644
        assert mode == expected, (name, oct(mode))


# A reader in its own process (true concurrency, no GIL shared with the writer) that polls as TF
# Serving does: list the base path and check that the version is a folder. Files read one by one after
# that may span two generations under any scheme, so only the version's presence counts.
POLLING_READER = """
import os, sys
base, stop = sys.argv[1], sys.argv[2]
polls = missing = 0
print("ready", flush=True)
while not os.path.exists(stop):
    polls += 1
    if "1" not in os.listdir(base) or not os.path.isdir(os.path.join(base, "1")):
        missing += 1
print(polls, missing, flush=True)
"""


def test_force_never_leaves_the_version_missing_to_a_concurrent_reader(tmp_path):
    base = tmp_path / "exports" / "cnn"
    with staged_version(base, 1) as staging:
        (staging / "saved_model.pb").write_text("generation 0")
    stop = tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, "-c", POLLING_READER, str(base), str(stop)], stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "ready"
        for generation in range(1, 301):
            with staged_version(base, 1, force=True) as staging:
                (staging / "saved_model.pb").write_text(f"generation {generation}")
    finally:
        stop.write_text("")
        output, _ = reader.communicate(timeout=60)
    polls, missing = map(int, output.split())
    assert polls > 300 and missing == 0, (polls, missing)
    assert (base / "1" / "saved_model.pb").read_text() == "generation 300"
    assert _entries(base) == ["1"]  # the old versions are gone, no temporary folder is left


def test_force_without_an_atomic_exchange_still_replaces_and_says_so(tmp_path, monkeypatch):
    import export.publish

    monkeypatch.setattr(export.publish, "exchange_paths", lambda first, second: False)
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "old").write_text("old")
    lines = []
    with staged_version(tmp_path, 1, force=True, log=lines.append) as staging:
        (staging / "new").write_text("new")
    assert _entries(tmp_path / "1") == ["new"] and _entries(tmp_path) == ["1"]
    assert lines == [f"warning: this file system cannot exchange two folders atomically; {tmp_path / '1'} is missing "
                     "for a moment while it is replaced"]

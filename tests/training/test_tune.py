"""`python -m training.tune`: declared search spaces, trials as run directories, Ctrl-C and resume, the best config."""

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from kerasdl.config import ConfigError, resolve_config
from kerasdl.models.registry import get_model_entry, model_names
from kerasdl.search_space import Choice, Float, check_space


def best_validation(run_dir):
    with open(Path(run_dir) / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    return min(float(row["val_loss"]) for row in rows)


@pytest.mark.parametrize("name", model_names())
def test_every_model_declares_a_checked_search_space(name):
    space = get_model_entry(name).search_space
    assert space, f"{name} declares no search_space"
    # Every key is one of the model's config keys, every bound passes the config's checks, every range has a reason.
    check_space(name, space)


def test_a_space_with_a_wrong_key_or_no_reason_is_refused():
    with pytest.raises(ValueError, match="'model.dropout' is not a config key of cnn"):
        check_space("cnn", {"model.dropout": Float(0.0, 0.5, reason="x")})
    with pytest.raises(ValueError, match="needs a reason"):
        check_space("cnn", {"model.dropout_rate": Float(0.0, 0.5)})
    with pytest.raises(ConfigError, match="train.batch_size must be at least 1"):
        check_space("cnn", {"train.batch_size": Choice((0, 32), reason="x")})


def test_trial_values_are_set_and_checked_and_hyperband_scales_the_step_budget():
    from kerasdl.tuning import trial_config

    base = resolve_config("cnn")
    trial = trial_config(base, {"model.filters": "[32, 64, 128]", "model.dropout_rate": 0.3, "tuner/epochs": 5, "tuner/round": 0})
    assert trial.model["filters"] == (32, 64, 128) and trial.model["dropout_rate"] == 0.3
    assert trial.train.epochs == 5 and trial.train.min_steps == base.train.min_steps * 5 // base.train.epochs
    assert base.model["dropout_rate"] == 0.5 and base.train.epochs == 20  # The base config is untouched.
    with pytest.raises(ConfigError, match="model.dropout_rate must be float"):
        trial_config(base, {"model.dropout_rate": "high"})


def test_the_deadline_stops_training_after_the_current_batch():
    import keras

    from kerasdl.tuning import DeadlineCallback

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, name="dense")])
    model.compile(optimizer="sgd", loss="mse")
    callback = DeadlineCallback(deadline=time.time() - 1)
    history = model.fit(np.zeros((64, 2)), np.zeros((64, 1)), batch_size=8, epochs=5, callbacks=[callback], verbose=0)
    assert callback.stopped and len(history.epoch) == 1


def test_interrupted_search_resumes_and_its_best_yaml_reproduces_the_best_trial(tmp_path, repo_root):
    # Two trials of two epochs; min_steps makes each epoch long enough (2 s or more) to interrupt
    # trial 1 inside its second.
    command = [
        sys.executable, "-m", "training.tune", "mlp", "--max-trials", "2", "--epochs", "2", "--output", str(tmp_path),
        "--set", "train.min_steps=4000", "--set", "train.verbose=2",
    ]
    # Ctrl-C's default disposition, as a terminal gives it: a job started in the background without
    # job control (as CI starts this suite) inherits SIGINT ignored, and a Python started so never
    # installs its KeyboardInterrupt handler, so the interrupt would be lost (the CI failure).
    process = subprocess.Popen(
        command, cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline, interrupted = time.time() + 400, False
    while time.time() < deadline and process.poll() is None:
        backups = list(tmp_path.glob("mlp/tune-*/trials/trial_1/backup/training_metadata.json"))
        if backups and json.loads(backups[0].read_text()).get("epoch", 0) >= 1:
            process.send_signal(signal.SIGINT)  # What Ctrl-C sends.
            interrupted = True
            break
        time.sleep(0.1)
    output = process.communicate(timeout=120)[0]
    assert interrupted, output[-3000:]
    assert process.returncode == 130, output[-3000:]
    assert "interrupted: run the same command again to resume the search" in output
    tune_dir = next(tmp_path.glob("mlp/tune-bayesian-*"))
    first = (tune_dir / "trials" / "trial_0" / "history.csv").read_text()
    assert not (tune_dir / "best.yaml").exists()

    result = subprocess.run(command, cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "resuming the search" in result.stdout and "1 trials done" in result.stdout
    # The interrupted trial continues in its own run directory from its saved epoch; trial 0 is not trained again.
    assert f"resuming {tune_dir / 'trials' / 'trial_1'} from epoch 1" in result.stdout
    assert "trial 0 (1 of up to 2)" not in result.stdout and "trial 1 (2 of up to 2)" in result.stdout
    assert (tune_dir / "trials" / "trial_0" / "history.csv").read_text() == first
    summary = json.loads((tune_dir / "summary.json").read_text())
    assert [trial["trial_id"] for trial in summary["trials"]] == ["0", "1"]
    for trial in summary["trials"]:
        run_dir = Path(trial["run_dir"])
        for name in ("config.yaml", "model.keras", "history.csv", "metrics.json", "report.md"):
            assert (run_dir / name).is_file(), (run_dir, name)
        assert trial["val_loss"] == pytest.approx(best_validation(run_dir))
    best = summary["best"]
    assert best["val_loss"] == min(trial["val_loss"] for trial in summary["trials"])
    # The test split is reported once, for the best trial only (no trial fits the classical baseline).
    assert "classical baseline" not in result.stdout
    assert result.stdout.count("test accuracy") == 1 and summary["test_accuracy"] == json.loads((Path(best["run_dir"]) / "metrics.json").read_text())["test_accuracy"]

    # best.yaml is the best trial's config (the classical baseline back on), and a trial's config
    # trains it again: the same validation loss (same seed, deterministic kernels). Checked on
    # trial 0, which ran without interruption: the resumed trial's later epochs see another
    # shuffle order than an uninterrupted run would (README, hyperparameter search).
    best_yaml = tune_dir / "best.yaml"
    best_config = yaml.safe_load((Path(best["run_dir"]) / "config.yaml").read_text())
    best_config["report"]["baseline"] = True
    assert yaml.safe_load(best_yaml.read_text()) == best_config
    first = summary["trials"][0]
    again = subprocess.run(
        [sys.executable, "-m", "training.run", "mlp", "--config", str(Path(first["run_dir"]) / "config.yaml"), "--output", str(tmp_path / "again")],
        cwd=repo_root, capture_output=True, text=True, timeout=600,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    run_dir = next((tmp_path / "again" / "mlp").iterdir())
    assert best_validation(run_dir) == pytest.approx(first["val_loss"], abs=1e-4)


def test_bad_arguments_and_data_are_one_line_errors(cli, tmp_path):
    result = cli("training.tune", "mlp", "--max-minutes", "0")
    assert result.returncode == 2 and result.stderr.strip().endswith("expected a positive number, got '0' (see python -m training.tune --help)")
    result = cli("training.tune", "mlp", "--data", str(tmp_path / "missing.csv"), "--output", str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ") and "Traceback" not in result.stderr
    assert "missing.csv" in result.stderr


def test_minutes_spent_in_earlier_sessions_count(tmp_path):
    from kerasdl import rundir
    from kerasdl.tuning import STATE_FILE, search

    config = resolve_config("mlp", sets=[f"output={tmp_path}"], flags={"epochs": 1})
    tune_dir = tmp_path / "search"
    tune_dir.mkdir()
    # An earlier session used the whole minute: this one starts no trial and says why.
    (tune_dir / STATE_FILE).write_text(json.dumps({"fingerprint": rundir.config_fingerprint(config), "strategy": "bayesian", "elapsed_s": 60.0, "trials": {}}))
    lines = []
    summary = search(config, max_trials=2, max_minutes=1.0, tune_dir=str(tune_dir), log=lines.append)
    assert "the time limit (1 minutes) is reached" in lines and summary["trials"] == [] and summary["best"] is None
    assert not (tune_dir / "trials").exists() and not (tune_dir / "RUNNING").exists()
    assert json.loads((tune_dir / STATE_FILE).read_text())["elapsed_s"] >= 60.0
    # Another search's directory is refused in one line.
    other = resolve_config("mlp", sets=[f"output={tmp_path}"], flags={"epochs": 2})
    from kerasdl.tuning import TuneError

    with pytest.raises(TuneError, match="holds another search"):
        search(other, max_trials=1, max_minutes=1.0, tune_dir=str(tune_dir), log=lines.append)

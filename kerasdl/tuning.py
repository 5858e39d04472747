"""Hyperparameter search with KerasTuner: `search(config, ...)`, each trial a `training.run` run directory.

KerasTuner's oracles (Bayesian optimization, Hyperband) propose the values; a trial sets
them on the run's config (so each passes the same checks as `--set`) and trains it with
`kerasdl.train.train_and_evaluate` into `<tune dir>/trials/trial_<id>/`, a run directory with
every file `training.run` writes. What is searched is the model's registry entry's
`search_space` (`kerasdl.search_space`), restricted to the data's modality.

- The validation split chooses: a trial's score is its best epoch's validation loss in
  `history.csv` (the epoch early stopping restores), with that epoch's validation
  accuracy beside it. The test split is read for the best trial only (its `metrics.json`),
  once the search is over; every run directory holds its own test evaluation, as
  `training.run` writes it, which the search never reads.
- Bayesian optimization's first trial is the config as given (the defaults, or the
  user's settings), so the search can only improve on it; the next ones are random, then
  guided by a Gaussian process. Hyperband trains each trial for the epochs its bracket
  allots (`train.min_steps` scaled alike) and from scratch: a trial's weights are not
  carried into the next round.
- Budget: `max_trials` and `max_minutes`, the minutes counted over every session of the
  search. A trial starts only while time is left, and the time limit stops a running
  trial after its current batch (its best epoch so far is kept, as early stopping would);
  such a trial is marked, and is chosen as the best only when no complete trial exists,
  since its config would train longer than it did.
- Ctrl-C and the same command again resume: KerasTuner reloads its oracle from
  `<tune dir>/keras_tuner/` and runs the interrupted trial again with the same values, and
  that trial's run directory resumes from its last completed epoch (BackupAndRestore).
- At the end: `best.yaml` (the best trial's config: `python -m training.run MODEL --config
  best.yaml` trains the same run again) and `summary.json` (every trial, the best, its test
  accuracy).

Over ~300 lines: KerasTuner's oracle, the trial runner and the search's own state (time budget
across sessions, resume, best.yaml) are one job; split, each part would need the others' state.

Example:
>>> from kerasdl.config import resolve_config
>>> result = search(resolve_config("cnn"), max_trials=4, max_minutes=5)
>>> result["best"]["val_loss"], result["best_yaml"]
"""

import copy
import csv
import json
import math
import os
import time

import keras
import keras_tuner
import yaml

from kerasdl import rundir
from kerasdl.config import ConfigError, set_value
from kerasdl.console import hide_retracing_warnings
from kerasdl.search_space import Choice, Float, Int, applies

STRATEGIES = ("bayesian", "hyperband")
OBJECTIVE = "val_loss"
# Hyperband keeps the best 1/3 of each round and gives them 3x the epochs (Li et al. 2018's eta).
HYPERBAND_FACTOR = 3
STATE_FILE = "tune.json"
SUMMARY_FILE = "summary.json"
BEST_FILE = "best.yaml"


class TuneError(Exception):
    """A search that cannot run or go on (shown to the user in one line)."""

    user_error = True


def default_tune_dir(config, strategy):
    """`<output>/<model>/tune-<strategy>-<config fingerprint>`: the same command finds the same search."""
    return os.path.join(config.output, config.model_name, f"tune-{strategy}-{rundir.config_fingerprint(config)}")


def search(config, max_trials, max_minutes, strategy="bayesian", tune_dir=None, log=print, started=None):
    """Searches `config.model_name`'s declared space; returns the summary (also in `summary.json`).

    Args:
        config: the resolved base config (`kerasdl.config.resolve_config`); trial values
            are set on copies of it.
        max_trials: the most trials, over every session of this search.
        max_minutes: the most minutes of searching, over every session.
        strategy: "bayesian" or "hyperband".
        tune_dir: where the search lives; None uses `default_tune_dir`.
        log: where progress lines go.
        started: when this session's clock starts (`time.time()`); None: now. The command
            line passes its own start, so that loading TensorFlow and the data count too.

    Returns:
        `{"tune_dir", "trials": [...], "best": {...}, "best_yaml", "test_accuracy", "elapsed_s"}`.

    Raises:
        TuneError: no search space, an unknown strategy, or a busy tune directory.
    """
    from kerasdl.data import load_data
    from kerasdl.models.registry import get_model_entry

    if strategy not in STRATEGIES:
        raise TuneError(f"unknown strategy {strategy!r}; choose {' or '.join(STRATEGIES)}")
    entry = get_model_entry(config.model_name)
    # The data once up front: a bad source fails before any trial, and the modality picks the ranges.
    modality = load_data(config.data, entry.modalities, config.train.seed).modality
    space = {key: spec for key, spec in entry.search_space.items() if applies(spec, modality)}
    if not space:
        raise TuneError(f"{config.model_name} declares no search space for {modality} data (search_space in its model file)")
    tune_dir = tune_dir or default_tune_dir(config, strategy)
    os.makedirs(tune_dir, exist_ok=True)
    fingerprint = rundir.config_fingerprint(config)
    state = _read_json(os.path.join(tune_dir, STATE_FILE)) or {"fingerprint": fingerprint, "strategy": strategy, "elapsed_s": 0.0, "trials": {}}
    if state.get("fingerprint") != fingerprint or state.get("strategy") != strategy:
        raise TuneError(f"{tune_dir} holds another search ({state.get('strategy')}, config {state.get('fingerprint')}); choose another --tune-dir or delete it")
    rundir.take_lock(tune_dir, fingerprint)
    elapsed_before = float(state["elapsed_s"])
    budget = _Budget(max_trials, max_minutes, elapsed_before, started)
    # KerasTuner prints the traceback of every failed trial when DEBUG is on (its default); a
    # failed trial is logged here in one line, and its message keeps the traceback.
    keras_tuner.src.config.DEBUG = False
    hide_retracing_warnings()
    try:
        tuner = _make_tuner(config, space, strategy, tune_dir, budget, state, log)
        if elapsed_before:
            log(f"resuming the search in {tune_dir}: {len(_finished(state))} trials done, {budget.minutes_left():.1f} of {max_minutes:g} minutes left")
        else:
            log(f"searching {len(space)} settings of {config.model_name} ({strategy}): up to {max_trials} trials in {max_minutes:g} minutes; {tune_dir}")
        try:
            tuner.search(verbose=0)
        except _SearchOver:
            pass
        except RuntimeError as error:
            if "consecutive failures" not in str(error):
                raise
            # KerasTuner's stop after 3 failed trials in a row; each was logged with its reason.
            raise TuneError(f"the search stopped: {str(error).splitlines()[0]} (each trial's reason is logged above)") from None
    finally:
        state["elapsed_s"] = budget.elapsed()
        _write_json(os.path.join(tune_dir, STATE_FILE), state)
        rundir.release_lock(tune_dir)
    return _finish(config, tune_dir, state, log)


class FatalUserError(keras_tuner.errors.FatalError):
    """A user mistake inside a trial (bad data, a busy run): the search stops with one line."""

    user_error = True


class DefaultsFirstOracle(keras_tuner.oracles.BayesianOptimizationOracle):
    """Bayesian optimization whose first trial is the config as given (every range's default)."""

    def populate_space(self, trial_id):
        if not self.trials:
            return {"status": "RUNNING", "values": {hp.name: hp.default for hp in self.hyperparameters.space}}
        return super().populate_space(trial_id)


class DeadlineCallback(keras.callbacks.Callback):
    """Stops training after the batch during which `deadline` (a `time.time()`) passes; `stopped` says whether it did."""

    def __init__(self, deadline):
        super().__init__()
        self.deadline = deadline
        self.stopped = False

    def on_train_batch_end(self, batch, logs=None):
        if time.time() >= self.deadline:
            self.model.stop_training = True
            self.stopped = True


class _SearchOver(Exception):
    """Raised before a new trial when the trial count or the time is used up."""


class _Budget:
    def __init__(self, max_trials, max_minutes, elapsed_before, started=None):
        self.max_trials, self.max_minutes = max_trials, max_minutes
        self.session_started, self.elapsed_before = started or time.time(), elapsed_before
        self.deadline = self.session_started + max_minutes * 60.0 - elapsed_before

    def elapsed(self):
        """Seconds searched, this session and the earlier ones."""
        return self.elapsed_before + time.time() - self.session_started

    def minutes_left(self):
        return max(0.0, (self.deadline - time.time()) / 60.0)


def _make_tuner(config, space, strategy, tune_dir, budget, state, log):
    """The KerasTuner tuner: the chosen oracle, and a `run_trial` that trains one run directory."""
    hyperparameters = keras_tuner.HyperParameters()
    for key, spec in space.items():
        _declare(hyperparameters, key, spec, _current(config, key))
    objective = keras_tuner.Objective(OBJECTIVE, direction="min")
    common = dict(objective=objective, seed=config.train.seed, hyperparameters=hyperparameters, tune_new_entries=False)
    if strategy == "hyperband":
        oracle = keras_tuner.oracles.HyperbandOracle(max_epochs=config.train.epochs, factor=HYPERBAND_FACTOR, **common)
    else:
        oracle = DefaultsFirstOracle(max_trials=budget.max_trials, **common)

    class Search(keras_tuner.Tuner):
        def pre_create_trial(self):
            # An interrupted trial waits in the retry queue: it runs again whatever the count.
            retrying = bool(self.oracle._retry_queue) or self.tuner_id in self.oracle.ongoing_trials
            if not retrying and _ended(self) >= budget.max_trials:
                raise _SearchOver()
            if budget.minutes_left() <= 0:
                log(f"the time limit ({budget.max_minutes:g} minutes) is reached")
                raise _SearchOver()

        def run_trial(self, trial, *args, **kwargs):
            return _run_trial(self, config, space, trial, tune_dir, budget, state, log)

    return Search(oracle=oracle, directory=tune_dir, project_name="keras_tuner", overwrite=False)


def _declare(hyperparameters, key, spec, current):
    """Declares one range as a KerasTuner hyperparameter whose default is the config's current value."""
    if isinstance(spec, Float):
        default = current if isinstance(current, (int, float)) and spec.low <= current <= spec.high else None
        hyperparameters.Float(key, spec.low, spec.high, step=spec.step, sampling="log" if spec.log else "linear", default=default)
    elif isinstance(spec, Int):
        default = current if isinstance(current, int) and spec.low <= current <= spec.high else None
        hyperparameters.Int(key, spec.low, spec.high, step=spec.step, sampling="log" if spec.log else "linear", default=default)
    elif isinstance(spec, Choice) and all(isinstance(value, bool) for value in spec.values):
        # KerasTuner's Choice hands booleans back as 0 and 1; its Boolean keeps them booleans.
        hyperparameters.Boolean(key, default=bool(current) if isinstance(current, bool) else False)
    elif isinstance(spec, Choice):
        # KerasTuner's choices are numbers, strings or booleans; lists (filter counts) travel as JSON.
        encoded = [_encode(value) for value in spec.values]
        default = _encode(current) if _encode(current) in encoded else None
        hyperparameters.Choice(key, encoded, default=default)
    else:
        raise TypeError(f"{key}: unknown range {spec!r}; use kerasdl.search_space.Float, Int or Choice")


def _encode(value):
    return json.dumps(list(value)) if isinstance(value, (list, tuple)) else value


def _decode(value):
    if isinstance(value, str) and value.startswith("["):
        return json.loads(value)
    if isinstance(value, float):
        # KerasTuner's grid steps add round-off (0.1 * 3 = 0.30000000000000004); 6 digits keep every value apart.
        return float(f"{value:.6g}")
    return value


def _current(config, key):
    section, _, name = key.partition(".")
    return config.model.get(name) if section == "model" else getattr(getattr(config, section), name)


def trial_config(config, values):
    """A copy of `config` with a trial's `{key: value}` set (each checked) and Hyperband's epochs applied.

    Example:
    >>> trial_config(resolve_config("cnn"), {"model.dropout_rate": 0.3}).model["dropout_rate"]
    0.3
    """
    trial = copy.deepcopy(config)
    # Trials are judged on the validation split alone: the classical baseline would report a
    # test accuracy in every trial (and cost its fit each time). best.yaml turns it back on.
    trial.report.baseline = False
    for key, value in values.items():
        if key == "tuner/epochs":
            # Hyperband's allotment: the step minimum shrinks with the epochs, as one budget.
            trial.train.min_steps = math.ceil(config.train.min_steps * value / config.train.epochs)
            trial.train.epochs = int(value)
        elif not key.startswith("tuner/"):
            set_value(trial, key, _decode(value))
    return trial


def _ended(tuner):
    """Trials that ran to an end (complete or failed), interrupted ones aside."""
    return sum(trial.status in ("COMPLETED", "FAILED", "INVALID") for trial in tuner.oracle.trials.values())


def _run_trial(tuner, config, space, trial, tune_dir, budget, state, log):
    from kerasdl.console import user_error_message
    from kerasdl.train import train_and_evaluate

    values = dict(trial.hyperparameters.values)
    settings = {key: _decode(value) for key, value in values.items() if key in space}
    shown = ", ".join(f"{key}={value}" for key, value in settings.items())
    epochs = f", {values['tuner/epochs']} epochs" if "tuner/epochs" in values else ""
    log(f"trial {trial.trial_id} ({_ended(tuner) + 1} of up to {budget.max_trials}{epochs}): {shown}")
    run_dir = os.path.join(tune_dir, "trials", f"trial_{trial.trial_id}")
    deadline = DeadlineCallback(budget.deadline)
    started = time.time()
    # Outside the `try`: a declared value the config refuses is a bug of the declaration (its traceback shows).
    settings_config = trial_config(config, values)
    try:
        summary = train_and_evaluate(settings_config, workdir=run_dir, log=log, callbacks=[deadline])
    except ConfigError as error:  # Values the builder refuses together: this trial fails, the search goes on.
        log(f"trial {trial.trial_id} failed: {error}")
        raise keras_tuner.errors.FailedTrialError(str(error)) from error
    except Exception as error:
        message = user_error_message(error)
        if message is not None:
            raise FatalUserError(message) from error
        raise keras_tuner.errors.FatalError(f"trial {trial.trial_id} failed: {type(error).__name__}: {error}") from error
    scores = validation_scores(summary["run_dir"])
    record = {
        "trial_id": trial.trial_id, "values": settings, "epochs_planned": values.get("tuner/epochs"), "run_dir": summary["run_dir"],
        "seconds": round(time.time() - started, 1), "stopped_by_time_limit": deadline.stopped, **scores,
    }
    state["trials"][trial.trial_id] = record
    # Recorded at once: a search killed later still knows this trial's scores.
    _write_json(os.path.join(tune_dir, STATE_FILE), dict(state, elapsed_s=budget.elapsed()))
    best = _best(_finished(state))
    cut = " (stopped by the time limit)" if deadline.stopped else ""
    log(
        f"trial {trial.trial_id} done in {record['seconds']:.0f} s{cut}: val_loss {scores['val_loss']:.4f}, val_accuracy {scores['val_accuracy']:.4f}; "
        f"best so far: trial {best['trial_id']} (val_loss {best['val_loss']:.4f}, val_accuracy {best['val_accuracy']:.4f}); "
        f"{_ended(tuner) + 1} of up to {budget.max_trials} trials done, {budget.minutes_left():.1f} of {budget.max_minutes:g} minutes left"
    )
    return {OBJECTIVE: scores["val_loss"], "val_accuracy": scores["val_accuracy"]}


def validation_scores(run_dir):
    """The validation loss and accuracy of a run's best epoch (lowest val_loss, the epoch early stopping restores).

    Example:
    >>> validation_scores("runs/cnn/20260101-000000")
    {'val_loss': 0.41, 'val_accuracy': 0.87, 'best_epoch': 12}
    """
    with open(os.path.join(run_dir, "history.csv"), newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("val_loss") not in (None, "", "nan")]
    if not rows:
        raise TuneError(f"{run_dir}/history.csv holds no validation loss; the trial did not finish an epoch")
    best = min(rows, key=lambda row: float(row["val_loss"]))
    return {"val_loss": float(best["val_loss"]), "val_accuracy": float(best.get("val_accuracy", "nan")), "best_epoch": int(best["epoch"]) + 1}


def _finished(state):
    return list(state["trials"].values())


def _best(records):
    """The lowest validation loss among the complete trials; a trial cut by the time limit only when none is complete."""
    complete = [record for record in records if not record["stopped_by_time_limit"]] or records
    return min(complete, key=lambda record: record["val_loss"]) if complete else None


def _finish(config, tune_dir, state, log):
    """Writes `best.yaml` and `summary.json`, reads the best trial's test accuracy once, and says so."""
    records = sorted(_finished(state), key=lambda record: record["trial_id"])
    summary = {"tune_dir": tune_dir, "model": config.model_name, "elapsed_s": round(state["elapsed_s"], 1), "trials": records, "best": None, "best_yaml": None, "test_accuracy": None}
    best = _best(records)
    if best is None:
        log(f"no trial finished in {tune_dir}; give the search more time (--max-minutes)")
        _write_json(os.path.join(tune_dir, SUMMARY_FILE), summary)
        return summary
    with open(os.path.join(best["run_dir"], "config.yaml")) as handle:
        best_config = yaml.safe_load(handle)
    best_config.setdefault("report", {})["baseline"] = config.report.baseline  # off in the trials only
    best_yaml = os.path.join(tune_dir, BEST_FILE)
    header = (
        f"# The best of {len(records)} trials of `python -m training.tune {config.model_name}` by validation loss: trial {best['trial_id']},\n"
        f"# val_loss {best['val_loss']:.4f}, val_accuracy {best['val_accuracy']:.4f} (epoch {best['best_epoch']}); run {best['run_dir']}\n"
        f"# Train it again: python -m training.run {config.model_name} --config {best_yaml}\n"
    )
    partial = best_yaml + f".partial-{os.getpid()}"
    with open(partial, "w") as handle:
        handle.write(header + yaml.safe_dump(best_config, sort_keys=False))
    os.replace(partial, best_yaml)
    metrics = _read_json(os.path.join(best["run_dir"], "metrics.json")) or {}
    summary.update(best=best, best_yaml=best_yaml, test_accuracy=metrics.get("test_accuracy"))
    _write_json(os.path.join(tune_dir, SUMMARY_FILE), summary)
    log(f"best: trial {best['trial_id']}, val_loss {best['val_loss']:.4f}, val_accuracy {best['val_accuracy']:.4f} ({', '.join(f'{key}={value}' for key, value in best['values'].items())})")
    if best["stopped_by_time_limit"]:
        log("note: no trial finished within the time limit; the best was stopped early, so its config trains longer than it did")
    if summary["test_accuracy"] is not None:
        log(f"test accuracy of the best trial (the only test result the search reports): {summary['test_accuracy']:.4f}")
    log(f"best config: {best_yaml}")
    return summary


def _read_json(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None


def _write_json(path, document):
    partial = f"{path}.partial-{os.getpid()}"
    with open(partial, "w") as handle:
        json.dump(document, handle, indent=2, default=str)
    os.replace(partial, path)

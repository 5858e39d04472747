"""kerasdl.schedules: Keras' warmup + cosine schedule without `ops.cond`, equal on TensorFlow and JAX."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from kerasdl.schedules import WarmupCosineDecay

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [
    dict(initial_learning_rate=1e-5, decay_steps=90, warmup_target=1e-3, warmup_steps=10, alpha=0.01),
    dict(initial_learning_rate=0.0, decay_steps=7, warmup_target=5e-4, warmup_steps=3, alpha=0.0),
    dict(initial_learning_rate=1e-3, decay_steps=50, warmup_target=1e-3, warmup_steps=0, alpha=0.01),
    dict(initial_learning_rate=1e-3, decay_steps=50, alpha=0.01),
]
STEPS = [0, 1, 2, 3, 5, 9, 10, 11, 30, 56, 99, 100, 101, 250]


def values(schedule):
    return np.array([float(keras.ops.convert_to_numpy(schedule(step))) for step in STEPS])


@pytest.mark.parametrize("config", CONFIGS)
def test_same_values_as_keras_cosine_decay(config):
    np.testing.assert_allclose(values(WarmupCosineDecay(**config)), values(keras.optimizers.schedules.CosineDecay(**config)), rtol=1e-6, atol=1e-12)


def test_never_branches_with_cond(monkeypatch):
    # An eager `ops.cond` is what JAX compiles again on every read; Keras' own schedule uses it.
    from keras.src.optimizers.schedules import learning_rate_schedule

    def refuse(*arguments, **keywords):
        raise AssertionError("ops.cond was called")

    monkeypatch.setattr(learning_rate_schedule.ops, "cond", refuse)
    monkeypatch.setattr(keras.ops, "cond", refuse)
    with pytest.raises(AssertionError, match="ops.cond was called"):
        keras.optimizers.schedules.CosineDecay(**CONFIGS[0])(3)
    assert float(WarmupCosineDecay(**CONFIGS[0])(3)) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.3)


def test_serializes_with_the_optimizer():
    schedule = WarmupCosineDecay(**CONFIGS[0])
    restored = keras.optimizers.deserialize(json.loads(json.dumps(keras.optimizers.serialize(keras.optimizers.AdamW(learning_rate=schedule)))))
    assert type(restored.learning_rate) is not float
    assert isinstance(restored._learning_rate, WarmupCosineDecay)
    assert restored._learning_rate.get_config() == schedule.get_config()
    np.testing.assert_allclose(values(restored._learning_rate), values(schedule))


def test_same_values_under_jax_eager_and_compiled():
    code = textwrap.dedent("""
        import json
        from kerasdl.backend import select_backend
        select_backend("jax")
        import jax, keras, numpy as np
        from kerasdl.schedules import WarmupCosineDecay
        config = dict(initial_learning_rate=1e-5, decay_steps=90, warmup_target=1e-3, warmup_steps=10, alpha=0.01)
        steps = [0, 1, 5, 10, 11, 56, 100, 250]
        ours, theirs = WarmupCosineDecay(**config), keras.optimizers.schedules.CosineDecay(**config)
        compiled = jax.jit(ours)
        print(json.dumps({"backend": keras.backend.backend(), "eager": [float(ours(s)) for s in steps],
                          "compiled": [float(compiled(np.int32(s))) for s in steps], "keras": [float(theirs(s)) for s in steps]}))
    """)
    environ = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(REPO_ROOT))
    completed = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=environ, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["backend"] == "jax"
    np.testing.assert_allclose(result["eager"], result["keras"], rtol=1e-6)
    np.testing.assert_allclose(result["compiled"], result["keras"], rtol=1e-6)

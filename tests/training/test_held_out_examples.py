"""The run keeps its whole validation split for export's int8 gate (issue 10 item 10)."""

import numpy as np

from training.run import main


def test_the_run_keeps_every_validation_example(tmp_path):
    # The built-in digits: 1,797 images, a tenth held out for validation (180), more than the 64 kept before.
    assert main(["mlp", "--epochs", "1", "--output", str(tmp_path), "--set", "train.verbose=0"]) == 0
    (run_dir,) = (tmp_path / "mlp").iterdir()
    with np.load(run_dir / "data" / "validation.npz") as validation:
        x, y = validation["x"], validation["y"]
    assert len(x) == len(y) == 180
    assert np.isfinite(x).all() and set(np.unique(y)) == set(range(10))

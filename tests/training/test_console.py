"""A quiet, honest console (`kerasdl.console`): no TensorFlow start-up noise, every real error kept."""

import os
import re
import subprocess
import sys
import textwrap

NOISE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1795943630.423837   28232 port.cc:153] oneDNN custom operations are on. You may see slightly different numerical results.",
    "I0000 00:00:1795943630.424197   28232 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.",
    "E0000 00:00:1795943634.085493   28232 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    "I0000 00:00:1795943649.018243   28550 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available CPU instructions.",
    "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.",
    "E0000 00:00:1795947449.049931   17366 util.cc:131] oneDNN supports DT_BOOL only on platforms with AVX-512. Falling back to the default Eigen-based implementation if present.",
    "E0000 00:00:1795943634.757357   28232 node_def_util.cc:682] NodeDef mentions attribute use_unbounded_threadpool which is not in the op definition: Op<name=MapDataset>",
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
]
REAL = [
    "E0000 00:00:1795943634.757357   28232 some_kernel.cc:12] a real TensorFlow error",
    "To enable the following instructions: this line follows no start-up notice, so it stays",
    "error: a kerasdl error line",
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU. and more: not the notice itself",
]


def run_python(source, repo_root, **environment):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)], cwd=repo_root, capture_output=True, text=True, timeout=120,
        env={**os.environ, **environment},
    )


def test_start_up_noise_is_dropped_and_real_lines_kept(repo_root):
    source = f"""
        import os, sys
        from kerasdl.console import quiet_startup
        quiet_startup()
        lines = {NOISE[:3] + [REAL[0]] + NOISE[3:] + REAL[1:]!r}
        for line in lines:
            os.write(2, (line + "\\n").encode())  # As TensorFlow's C++ log writes: straight to file descriptor 2.
        print("python's own stderr", file=sys.stderr)
        raise SystemExit(3)
    """
    result = run_python(source, repo_root, KERASDL_DEBUG="")
    assert result.returncode == 3
    assert result.stderr.splitlines() == [REAL[0], *REAL[1:], "python's own stderr"]
    # KERASDL_DEBUG=1 shows everything.
    assert result.stderr.count("\n") < run_python(source, repo_root, KERASDL_DEBUG="1").stderr.count("\n")


def test_lines_written_just_before_a_hard_death_still_show(repo_root):
    source = """
        import os, signal
        from kerasdl.console import quiet_startup
        quiet_startup()
        os.write(2, b"F0000 00:00:1 1 check.cc:1] Check failed: the last words\\n")
        os.kill(os.getpid(), signal.SIGKILL)
    """
    result = run_python(source, repo_root, KERASDL_DEBUG="")
    assert result.returncode == -9
    assert "Check failed: the last words" in result.stderr


def test_training_run_prints_only_the_run(tmp_path, cli):
    result = cli("training.run", "mlp", "--epochs", "1", "--output", str(tmp_path), "--set", "train.verbose=2", env={"KERASDL_DEBUG": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr == "", result.stderr[-3000:]
    lines = result.stdout.splitlines()
    # The backend comes first: it is chosen before anything imports Keras.
    assert lines[0] == "backend: jax (the registry entry of mlp says jax)"
    assert lines[1].startswith("data: scikit-learn digits") and lines[-1].startswith("time: ")
    assert not [line for line in lines if re.match(r"^[IWEF]\d{4} |WARNING|Warning", line)]

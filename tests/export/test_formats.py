"""The format registry (`export.formats`): one module per format, the same interface, tolerances that never KeyError."""

import subprocess
import sys
from pathlib import Path

import pytest

from export import formats

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", formats.NAMES)
def test_every_format_module_has_the_interface(name):
    module = formats.get_format(name)
    assert module.NAME == name
    assert isinstance(module.FILES, dict) and "fp32" in module.FILES
    assert set(module.FILES) <= {"fp32", "int8"}
    assert 0 < module.DEFAULT_TOLERANCE < 0.1
    assert isinstance(module.TAKES_TOKEN_IDS, bool)
    for function in ("write", "verify", "load"):
        assert callable(getattr(module, function)), function
    # A format with an int8 file has the quantization hook, and only then.
    assert callable(getattr(module, "quantize", None)) == ("int8" in module.FILES)


def test_the_registry_knows_its_files_and_rejects_unknown_names():
    assert formats.format_of_file("exports/cnn/1/model.onnx") == ("onnx", "fp32")
    assert formats.format_of_file("model.int8.onnx") == ("onnx", "int8")
    assert formats.format_of_file("elsewhere/renamed.onnx") == ("onnx", "fp32")
    assert formats.format_of_file("notes.txt") is None
    with pytest.raises(KeyError, match=f"unknown format tflite; choose from: {', '.join(formats.NAMES)}"):
        formats.get_format("tflite")
    assert set(formats.DEFAULT_FORMATS) <= set(formats.NAMES)
    assert "onnx" in formats.quantizable_formats() and "savedmodel" not in formats.quantizable_formats()


def test_a_format_missing_from_a_models_tolerances_gets_the_formats_default():
    # mlp states only an ONNX tolerance; bert states savedmodel and onnx ones.
    assert formats.tolerance({"model": "mlp"}, "onnx") == 1e-5
    assert formats.tolerance({"model": "mlp"}, "savedmodel") == formats.get_format("savedmodel").DEFAULT_TOLERANCE
    assert formats.tolerance({"model": "bert"}, "savedmodel") == 1e-4
    # A model outside the registry, or metadata without a model name: the default, no KeyError.
    assert formats.tolerance({"model": "not-registered"}, "onnx") == formats.get_format("onnx").DEFAULT_TOLERANCE
    assert formats.tolerance({}, "savedmodel") == formats.get_format("savedmodel").DEFAULT_TOLERANCE


def test_the_onnx_opset_is_stated_once():
    # Only export/formats/onnx.py may write the number; the CLI and the API read OPSET.
    from export.formats.onnx import OPSET

    holders = [path.relative_to(REPOSITORY).as_posix() for path in (REPOSITORY / "export").rglob("*.py")
               if f"= {OPSET}" in path.read_text() or f"opset={OPSET}" in path.read_text()]
    assert holders == ["export/formats/onnx.py"]


def test_help_lists_the_registrys_formats_without_importing_tensorflow():
    code = ("import sys\nfrom export.run import build_parser\ntext = build_parser().format_help()\n"
            "assert not [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')], 'tensorflow imported'\n"
            "print(text)")
    completed = subprocess.run([sys.executable, "-c", code], cwd=REPOSITORY, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert "any of " + ", ".join(formats.NAMES) in " ".join(completed.stdout.split())
    assert f"ONNX opset (default: {formats.get_format('onnx').OPSET})" in " ".join(completed.stdout.split())

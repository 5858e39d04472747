"""`python -m export.run`: a trained run (or `.keras` file) to verified, published serving artifacts.

    python -m export.run runs/cnn/20261128-010203 --format savedmodel onnx --quantize int8

writes `exports/<name>/<version>/` (CONTRACTS.md §5): the TF Serving SavedModel
with its warmup requests and model card, `model.onnx` (+ `model.int8.onnx`,
+ `tokenizer/` for text models). Every artifact is reloaded and compared with
the Keras model on held-out examples before the version folder is renamed into
place; a mismatch exits with status 1 and publishes nothing. An int8 variant
that loses more than --max-accuracy-drop points on the run's held-out examples
is left out and the fp32 artifacts are published (a log line and the model card
say so), or, with --require-int8, nothing is published (status 1). Usage errors
(missing file, not a kerasdl model, an existing version without --force) exit
with status 2. Both print one line on stderr, no traceback.

This module is the command line only: the export is `export.orchestrator`,
the formats are `export.formats`, the model card is `export.model_card`.
"""

import sys

from export import formats
from export.cli import OneLineParser, quiet_libraries
from export.errors import ExportError, VerificationError
from export.orchestrator import ExportResult, export_model

__all__ = ["ExportResult", "build_parser", "export_model", "main"]


def build_parser():
    from export.formats.onnx import OPSET

    defaults = " ".join(formats.DEFAULT_FORMATS)
    parser = OneLineParser(
        prog="python -m export.run",
        description="Export a trained kerasdl model to TF Serving SavedModel, ONNX and more; verify parity, publish atomically.",
    )
    parser.add_argument("path", help="a run directory (runs/<model>/<timestamp>/) or a .keras file saved by kerasdl")
    parser.add_argument("--format", nargs="+", default=list(formats.DEFAULT_FORMATS), dest="formats", metavar="FORMAT",
                        help=f"any of {', '.join(formats.NAMES)} (default: {defaults})")
    parser.add_argument("--quantize", choices=["int8"], default=None,
                        help=f"also write the int8 variant of each of {', '.join(formats.quantizable_formats())} that is exported")
    parser.add_argument("--name", default=None, help="served model name (default: the model's registry name)")
    parser.add_argument("--base", default="exports", help="folder of TF Serving model base paths (default: exports)")
    parser.add_argument("--version", type=int, default=None, help="version number (default: the next one)")
    parser.add_argument("--force", action="store_true", help="replace an existing version")
    parser.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default: {OPSET})")
    parser.add_argument("--max-accuracy-drop", type=float, default=1.0,
                        help="leave int8 out (publish fp32 only) when it loses more accuracy than this on the "
                             "held-out examples, in points (default: 1.0)")
    parser.add_argument("--require-int8", action="store_true",
                        help="publish nothing when an int8 variant is left out (implies --quantize int8)")
    return parser


def main(argv=None):
    """Runs the CLI; returns the exit status (0 published, 1 verification failed, 2 usage error)."""
    arguments = build_parser().parse_args(argv)
    quiet_libraries()
    try:
        export_model(
            arguments.path,
            formats=arguments.formats,
            name=arguments.name,
            base=arguments.base,
            version=arguments.version,
            force=arguments.force,
            opset=arguments.opset,
            quantize=arguments.quantize,
            max_accuracy_drop=arguments.max_accuracy_drop,
            require_int8=arguments.require_int8,
        )
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except VerificationError as error:
        print(f"verification failed: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # A conversion crash is still one line, and nothing was published.
        detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(f"error: export failed ({type(error).__name__}: {detail}); nothing published", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from kerasdl.console import quiet_startup  # Before TensorFlow loads; see kerasdl/console.py.

    quiet_startup()
    sys.exit(main())

"""What the export stage's command lines share: one-line usage errors and quiet libraries.

Imports nothing heavy, so the ONNX-only prediction path stays free of TensorFlow.
"""

import argparse
import os


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (argparse prints the whole usage first)."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def quiet_libraries():
    """Silences TensorFlow's start-up lines and deprecation warnings; errors still show.

    The TF1 loader that verification uses on purpose, and tf2onnx's freezing calls, warn at
    length and would bury the parity table.
    """
    import logging
    import warnings

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    logging.getLogger().setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)

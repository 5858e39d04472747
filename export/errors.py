"""The two ways an export fails, which the CLIs turn into exit codes without a traceback."""


class ExportError(ValueError):
    """A usage problem (missing file, not a kerasdl model, existing version): exit code 2.

    The message is one line that says what is wrong and what to do.
    """


class VerificationError(RuntimeError):
    """An exported artifact does not give the Keras model's answers (or int8 lost too much): exit code 1."""

"""Model builders and the registry of `python -m training.run` entries."""

from kerasdl.models.cnn import cnn
from kerasdl.models.mlp import mlp
from kerasdl.models.registry import get_model_entry, model_names, register

__all__ = ["cnn", "mlp", "get_model_entry", "model_names", "register"]

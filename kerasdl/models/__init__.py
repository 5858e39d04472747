"""Model builders and the registry of `python -m training.run` entries."""

from kerasdl.models.bert import bert
from kerasdl.models.cnn import cnn
from kerasdl.models.lstm import lstm
from kerasdl.models.mlp import mlp
from kerasdl.models.registry import get_model_entry, model_names, register
from kerasdl.models.resnet50 import resnet50
from kerasdl.models.text_lstm import text_lstm

__all__ = ["bert", "cnn", "lstm", "mlp", "resnet50", "text_lstm", "get_model_entry", "model_names", "register"]

"""Model builders, one file per model, each with its registry entry (`kerasdl.models.registry`).

Importing this package loads no Keras: the builders import it when they run.
"""

from kerasdl.models.bert import bert
from kerasdl.models.cnn import cnn
from kerasdl.models.fcn import fcn
from kerasdl.models.lstm import lstm, text_lstm
from kerasdl.models.mlp import mlp, ngram_mlp
from kerasdl.models.registry import get_model_entry, model_names, register_model
from kerasdl.models.resnet50 import resnet50

__all__ = ["bert", "cnn", "fcn", "lstm", "mlp", "ngram_mlp", "resnet50", "text_lstm", "get_model_entry", "model_names", "register_model"]

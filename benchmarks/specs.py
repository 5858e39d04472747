"""The training budgets shared by `accuracy` (which reports them) and `latency` (which
exports the same trained runs, so nothing is trained twice in one benchmark run).

Each spec: `name -> dict(model, data, epochs, batch_size, sets, weights, reference)`.
`data` may be a callable `(folder) -> path` for data that is written first (MNIST npz).
"""

import os
import tempfile

from benchmarks import common, provenance

# Published references (see ../shared/README.md).
REFERENCES = {
    "mlp_mnist": (0.9905, "LeNet-5 0.95% error on full MNIST (LeCun 1998)"),
    "cnn_cifar10": (0.9357, "ResNet-110 6.43% error on original CIFAR-10 (He 2016); a small CNN on part of the set is expected far lower"),
    "lstm_gunpoint": (0.913, "1-NN Euclidean 91.3% (FCN/ResNet 100%, Wang 2017)"),
    "lstm_ecg200": (0.88, "1-NN 88% (FCN 90%)"),
    "text_lstm_sst2": (0.881, "CNN (Kim 2014) 88.1% on SST-2"),
    "bert_sst2": (0.935, "BERT-base 93.5% (GLUE, pretrained); ours is trained from scratch"),
    "resnet50_hymenoptera": (0.94, "fine-tuned ImageNet ResNet-18 0.93-0.95; ours has no pretrained weights (--weights none)"),
}


def mnist_data(folder):
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "mnist_8000_2000.npz")
    if not os.path.isfile(path):
        return common.mnist_npz(folder, 8000, 2000)
    return path


def specs(quick):
    """The training spec of every accuracy case, sized for `quick` (or the toy knob)."""
    toy = common.TOY
    cifar = common.data_path("cifar10-test-jpg")
    sst2 = common.data_path("sst2")
    ucr = common.data_path("ucr")
    hymenoptera = common.data_path("hymenoptera")
    table = {}
    if toy:
        table["mlp_digits"] = dict(model="mlp", data=None, epochs=1, batch_size=None, sets=(), weights=None, reference=(None, "built-in digits, toy run"))
        return table
    table["mlp_mnist"] = dict(model="mlp", data=mnist_data, epochs=5 if quick else 15, batch_size=64, sets=("model.dropout_rate=0.2", "model.hidden_units=256"), weights=None)
    if cifar:
        table["cnn_cifar10"] = dict(
            model="cnn", data=cifar, epochs=3 if quick else 10, batch_size=64,
            sets=("data.max_examples=2000",) if quick else (), weights=None,
        )
    if ucr:
        for case, name in (("lstm_gunpoint", "GunPoint"), ("lstm_ecg200", "ECG200")):
            table[case] = dict(
                model="lstm", data=os.path.join(ucr, name), epochs=40 if quick else 150, batch_size=16,
                sets=("train.learning_rate=0.003", "train.early_stopping_patience=30"), weights=None,
            )
    if sst2:
        examples = 2000 if quick else 8000
        table["text_lstm_sst2"] = dict(model="lstm", data=sst2, epochs=2 if quick else 4, batch_size=64, sets=(f"data.max_examples={examples}",), weights=None)
        table["bert_sst2"] = dict(
            model="bert", data=sst2, epochs=2 if quick else 4, batch_size=64,
            sets=(f"data.max_examples={examples}", "model.sequence_length=64", "train.learning_rate=0.0005"), weights=None,
        )
    if hymenoptera:
        table["resnet50_hymenoptera"] = dict(
            model="resnet50", data=hymenoptera, epochs=1 if quick else 4, batch_size=32,
            sets=("data.image_size=[160,160]",), weights="none",
        )
    for case, spec in table.items():
        spec.setdefault("reference", REFERENCES.get(case, (None, "")))
    return table


def train(case, spec, log=print):
    """Trains (or reuses, see `common.trained_run`) the run of one spec; returns `(run_dir, metrics)`."""
    data = spec["data"]
    if callable(data):
        # Written data is derived by code, so it lives under the code version: a file written
        # by older code is never read again (nor, through its fingerprint, a run trained on it).
        code = provenance.code_version()["key"]
        data = data(os.path.join(common.runs_folder(), "data", code) if code else tempfile.mkdtemp(prefix="kerasdl-bench-data-"))
    return common.trained_run(spec["model"], data, spec["epochs"], spec["batch_size"], spec["sets"], spec["weights"], log=log)


# The run each latency model is exported from.
LATENCY_CASES = {"mlp": "mlp_mnist", "cnn": "cnn_cifar10", "lstm": "lstm_gunpoint", "bert": "bert_sst2", "resnet50": "resnet50_hymenoptera"}

"""The run's plots: learning curves and the confusion matrix (matplotlib, Agg backend)."""

import numpy as np


def plot_learning_curves(history, path, phases=()):
    """Plots loss and accuracy per epoch (train solid, validation dashed), each phase switch marked.

    Args:
        history: `read_history`'s result (`{"loss": [...], "val_loss": [...], ...}`).
        path: the PNG to write.
        phases: the run's training phases (`metrics.json`'s `phases`, each with `epochs` and
            `name`); a dotted line after each phase's last epoch names the phase that follows
            (e.g. a ResNet50's switch from head training to fine-tuning).

    Returns:
        `[(x, name), ...]`: where each phase switch was drawn, and the phase it starts.

    Example:
    >>> plot_learning_curves({"loss": [0.9, 0.5, 0.4], "val_loss": [1.0, 0.7, 0.6]}, "curves.png",
    ...                      [{"epochs": 1, "name": "head (frozen base)"}, {"epochs": 2, "name": "fine-tune (top 2 blocks)"}])
    [(1.5, 'fine-tune (top 2 blocks)')]
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    switches, done = [], 0
    for phase, following in zip(phases, list(phases)[1:]):
        done += phase["epochs"]
        switches.append((done + 0.5, following["name"]))
    for axis, metric in zip(axes, ("loss", "accuracy")):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = history.get(prefix + metric)
            if values:
                axis.plot(epochs[: len(values)], values, style, marker="o", label=(prefix or "train_") + metric)
        for x, name in switches:
            axis.axvline(x, color="grey", linestyle=":", linewidth=1.5)
            axis.annotate(name, (x, 1), xycoords=("data", "axes fraction"), xytext=(3, -12), textcoords="offset points", fontsize=8, color="dimgrey")
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_title(metric)
        axis.legend()
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return switches


def plot_confusion_matrix(matrix, class_names, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix)
    size = max(4, 0.5 * len(class_names) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(matrix, cmap="Blues")
    axis.set_xticks(range(len(class_names)), class_names, rotation=90)
    axis.set_yticks(range(len(class_names)), class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    for (row, column), value in np.ndenumerate(matrix):
        axis.text(column, row, str(value), ha="center", va="center", fontsize=8, color="black" if value < matrix.max() / 2 else "white")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)

"""Learning-curve figures (matplotlib, no display needed)."""

import io

from .utils.io import atomic_write_bytes

__all__ = ["plot_learning_curves", "png_bytes"]

_LABELS = {"auroc": "AUROC", "accuracy": "accuracy"}


def plot_learning_curves(result, path=None, *, metric=None, spread="std", target=None,
                         reference=None, title=None):
    """Plot mean learning curves with their spread over seeds.

    Parameters
    ----------
    result : SimulationResult
    path : str or Path, optional
        Where to save a PNG (written atomically).
    metric : str, optional
        ``"auroc"`` or ``"accuracy"``; defaults to the result's headline metric.
    spread : {"std", "minmax", None}
        Shaded band: mean +/- one standard deviation over seeds, or min to max.
    target : float, optional
        Draw a dashed horizontal line (e.g. random's final metric).
    reference : float, optional
        Draw a dotted line for the full-data model.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    metric = metric or result.metric
    values = result.scores[metric]
    fig = Figure(figsize=(7, 4.5), dpi=120)
    ax = fig.add_subplot()
    x = result.n_labels
    for s, name in enumerate(result.strategies):
        curves = values[s]
        mean = curves.mean(axis=0)
        line, = ax.plot(x, mean, marker="o", markersize=3, label=name,
                        linestyle="--" if name == "random" else "-")
        if spread == "std" and curves.shape[0] > 1:
            sd = curves.std(axis=0, ddof=1)
            ax.fill_between(x, mean - sd, mean + sd, color=line.get_color(), alpha=0.15)
        elif spread == "minmax" and curves.shape[0] > 1:
            ax.fill_between(x, curves.min(axis=0), curves.max(axis=0),
                            color=line.get_color(), alpha=0.15)
    if target is not None:
        ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target:.3f}")
    if reference is not None:
        ax.axhline(reference, color="black", linestyle=":", linewidth=1,
                   label=f"all labels {reference:.3f}")
    ax.set_xlabel("labelled images")
    ax.set_ylabel(f"test {_LABELS.get(metric, metric)}")
    n_seeds = values.shape[1]
    band = {"std": "mean ± 1 sd", "minmax": "mean, min-max"}.get(spread, "mean")
    ax.set_title(title or f"Learning curves ({band} over {n_seeds} seed{'s' * (n_seeds > 1)})")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    if path is not None:
        atomic_write_bytes(path, png_bytes(fig))
    return fig


def png_bytes(fig):
    """The figure rendered as PNG bytes (to be written with other files as a unit)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()

"""The report's plots, drawn with matplotlib and returned as PNG bytes.

Figures are made with ``matplotlib.figure.Figure`` and the Agg canvas directly, not through
``pyplot``: no GUI backend is touched, no global figure state is left behind, and a report
written in a process that also uses pyplot does not change that process's plots.
"""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

DPI = 80  # small files: a report holds a dozen figures and stays a few hundred kB


# A column named in a script the font lacks (日付) is drawn as boxes: the figure is still
# right, and matplotlib's four lines per missing glyph on the terminal help nobody.
warnings.filterwarnings("ignore", message="Glyph .* missing from", category=UserWarning)


def plain(text: str) -> str:
    """A user's string as literal text: matplotlib reads ``$...$`` as TeX (and fails on an
    unmatched ``$``), so every dollar sign is escaped."""
    return str(text).replace("$", r"\$")


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def _series(rows: list[dict], key: str) -> tuple[list[float], list[float]]:
    """Epochs and finite values of ``key`` (a missing or null value is left out)."""
    xs, ys = [], []
    for r in rows:
        v = r.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            xs.append(r["epoch"])
            ys.append(float(v))
    return xs, ys


# (title, [(metrics key, legend)]) per panel of the learning curves
CURVES = (
    ("ELBO (nats, higher is better)", [("train_elbo", "train"), ("val_elbo", "validation")]),
    (
        "reconstruction E_q[log p(x|z)]",
        [("train_reconstruction", "train"), ("val_reconstruction", "validation")],
    ),
    ("KL(q(z|x) ‖ p(z))", [("train_kl", "train"), ("val_kl", "validation")]),
    ("learning rate", [("lr", "lr")]),
    ("skipped steps (total)", [("skipped_steps", "non-finite steps skipped")]),
)


def learning_curves(rows: list[dict]) -> bytes | None:
    """One panel per curve of :data:`CURVES` from the rows of ``metrics.jsonl``."""
    panels = [(t, [(k, n, *_series(rows, k)) for k, n in keys]) for t, keys in CURVES]
    panels = [(t, [s for s in series if s[2]]) for t, series in panels]
    panels = [(t, series) for t, series in panels if series]
    if not panels:
        return None
    cols = 3
    nrows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.0 * nrows))
    for i, (title, series) in enumerate(panels):
        ax = fig.add_subplot(nrows, cols, i + 1)
        for _, name, xs, ys in series:
            ax.plot(xs, ys, marker="." if len(xs) < 30 else None, label=name)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if title.startswith("learning rate") and min(min(s[3]) for s in series) > 0:
            ax.set_yscale("log")
        if len(series) > 1:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def kl_per_dimension(kl: np.ndarray, active: np.ndarray, threshold: float) -> bytes:
    """Bars of the mean KL of each latent dimension, active units in a strong colour."""
    fig = Figure(figsize=(min(12, 2 + 0.25 * len(kl)), 3.2))
    ax = fig.add_subplot(1, 1, 1)
    idx = np.arange(len(kl))
    colors = np.where(active, "#1f77b4", "#c7c7c7")
    ax.bar(idx, kl, color=colors)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("latent dimension")
    ax.set_ylabel("KL (nats)")
    ax.set_title(
        f"KL per dimension: {int(active.sum())} of {len(kl)} active "
        f"(blue: Cov_x(E_q[z_i]) > {threshold:g})",
        fontsize=10,
    )
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def latent_map(points: np.ndarray, labels, title: str, axes: tuple[str, str]) -> bytes:
    """A scatter of 2-D points, coloured by label when there are labels (at most 20 classes
    get a legend entry each; more are coloured by their code)."""
    fig = Figure(figsize=(6.2, 5.2))
    ax = fig.add_subplot(1, 1, 1)
    size = 6 if len(points) > 2000 else 12
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=size, alpha=0.6, linewidths=0)
    else:
        names, codes = np.unique(np.asarray(labels).astype(str), return_inverse=True)
        if len(names) <= 20:
            cmap = colormaps["tab20" if len(names) > 10 else "tab10"]
            for i, name in enumerate(names):
                m = codes == i
                ax.scatter(
                    points[m, 0], points[m, 1], s=size, alpha=0.7, linewidths=0,
                    color=cmap(i % cmap.N), label=plain(name),
                )  # fmt: skip
            ax.legend(fontsize=8, markerscale=2, loc="best", title="label")
        else:
            sc = ax.scatter(points[:, 0], points[:, 1], c=codes, s=size, cmap="viridis")
            fig.colorbar(sc, ax=ax, label="label (code)")
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def histogram(
    values: np.ndarray, title: str, xlabel: str, marks: np.ndarray | None = None
) -> bytes:
    """A histogram of the finite ``values`` (a non-finite one has no place on the axis; the
    caller says how many there were); ``marks`` (e.g. the least likely rows) drawn as red ticks
    under it."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    fig = Figure(figsize=(7, 3.2))
    ax = fig.add_subplot(1, 1, 1)
    ax.hist(values, bins=min(60, max(10, len(values) // 10)), color="#1f77b4", alpha=0.85)
    if marks is not None:
        marks = np.asarray(marks, dtype=np.float64)
        marks = marks[np.isfinite(marks)]
    if marks is not None and len(marks):
        ax.plot(marks, np.zeros_like(marks), "|", color="#d62728", markersize=14)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("rows")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def column_bars(names: list[str], values: np.ndarray, title: str, ylabel: str) -> bytes:
    """One bar per column (the report's per-column reconstruction error)."""
    fig = Figure(figsize=(min(12, 2 + 0.45 * len(names)), 3.6))
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(np.arange(len(names)), values, color="#ff7f0e")
    ax.set_xticks(np.arange(len(names)))
    # matplotlib draws text as paths into the PNG: a hostile name is pixels, never markup
    ax.set_xticklabels([plain(n if len(n) <= 24 else n[:23] + "…") for n in names], rotation=60,
                       ha="right", fontsize=8)  # fmt: skip
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _png(fig)

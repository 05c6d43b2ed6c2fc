"""The report's sections that look at the model on the run's data: the latent space (KL per
dimension, active units, a 2-D map), and what the model makes of the data — image grids for
images (samples, reconstructions, interpolations, traversals), tables for tables (samples,
reconstructions, per-column error, per-row log p(x) and the least likely rows)."""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch.distributions import kl_divergence

from vaelab.evaluation.metrics import ACTIVE_UNIT_THRESHOLD, evaluate_model
from vaelab.models.protocols import OwnImportanceWeights
from vaelab.report import figures
from vaelab.report.html import Section, image, number, paragraph, table
from vaelab.viz.grid import grid_png
from vaelab.viz.pictures import grid_width, interpolations, reconstructions, samples
from vaelab.viz.traversals import traversals

MAP_POINTS = 10_000  # test examples drawn in the latent map (all of MNIST's test split)
UMAP_POINTS = 3_000  # UMAP, when installed, on fewer: it costs seconds per thousand
MAP_MIN_POINTS = 3  # a 2-D map needs 3 points: PCA of n points has at most n - 1 axes
UMAP_MIN_POINTS = 100  # below this a neighbour graph (15 neighbours) shows nothing PCA does not
SCORED_ROWS = 5_000  # table rows scored for the log p(x) histogram
SCORE_K = 200  # importance samples per scored row: a ranking, not a reported likelihood
LEAST_LIKELY = 10
TABLE_COLUMNS = 12  # columns shown in a table of rows (a wide table is cut, and says so)


@dataclass
class Latents:
    """The posterior of each of the first examples of a split: means and standard deviations
    ``(N, L)``, their labels, and the KL of each dimension to the prior (one layer only)."""

    mean: torch.Tensor
    std: torch.Tensor
    labels: np.ndarray | None
    kl: torch.Tensor | None  # (N, L)


@torch.no_grad()
def encode_split(model, x: torch.Tensor, labels, batch: int = 1000) -> Latents:
    means, stds, kls = [], [], []
    one_layer = not isinstance(model, OwnImportanceWeights)
    for i in range(0, x.shape[0], batch):
        q = model.encode(x[i : i + batch])
        means.append(q.mean.float())
        stds.append(q.stddev.float())
        if one_layer:
            kls.append(kl_divergence(q.base_dist, model.prior.base_dist).float())
    labels = None if labels is None else np.asarray(labels)[: x.shape[0]]
    return Latents(torch.cat(means), torch.cat(stds), labels, torch.cat(kls) if kls else None)


def _table_of_rows(values: np.ndarray, columns: list[str], first: list | None = None) -> str:
    """Rows of numbers under their column names (the first :data:`TABLE_COLUMNS` of them);
    ``first`` is an optional leading column, e.g. ``(label, values)``."""
    shown = columns[:TABLE_COLUMNS]
    header = ([first[0]] if first else []) + shown
    rows = []
    for i, row in enumerate(values):
        cells = [number(float(v), 3) for v in row[: len(shown)]]
        rows.append(([first[1][i]] if first else []) + cells)
    note = ""
    if len(columns) > len(shown):
        note = paragraph(f"first {len(shown)} of {len(columns)} columns shown", "note")
    numeric = set(range(1 if first else 0, len(header)))
    return table(header, rows, numeric=numeric) + note


def latent_section(model, lat: Latents, split: str) -> Section:
    """KL per dimension with active units marked, and the map of posterior means."""
    parts = []
    var = lat.mean.double().var(0) if lat.mean.shape[0] > 1 else torch.zeros(lat.mean.shape[1])
    active = (var > ACTIVE_UNIT_THRESHOLD).numpy()
    if lat.kl is not None:
        parts.append(
            image(
                figures.kl_per_dimension(
                    lat.kl.double().mean(0).numpy(), active, ACTIVE_UNIT_THRESHOLD
                ),
                "KL per latent dimension",
                f"mean KL(q(z_i|x) ‖ p(z_i)) over {lat.mean.shape[0]:,} {split} examples; a unit "
                "is active when its posterior mean varies across examples (Burda et al. 2015)",
            )
        )
    else:
        parts.append(paragraph(f"{int(active.sum())} of {len(active)} units of z1 active", "note"))
    parts.append(_latent_map(lat, split))
    return Section("latents", "Latent space", "".join(parts))


def _latent_map(lat: Latents, split: str) -> str:
    z = lat.mean[:MAP_POINTS].double()
    labels = None if lat.labels is None else lat.labels[:MAP_POINTS]
    n, dims = z.shape
    # PCA of n points spans at most n - 1 directions, so a second axis needs 3 points; fewer,
    # or means that do not vary at all, would be a picture of nothing (or a crash: one
    # component, and a "% of variance" of 0 / 0)
    if n < MAP_MIN_POINTS:
        return paragraph(
            f"No latent map: {n} {split} example{'s' if n != 1 else ''} "
            f"{'are' if n != 1 else 'is'} too few to draw one (it needs at least "
            f"{MAP_MIN_POINTS}).",
            "note",
        )
    if not bool((z != z[0]).any()):
        return paragraph(
            f"No latent map: the posterior means of the {n:,} {split} examples are all the "
            "same, so there is nothing to spread out on a map.",
            "note",
        )
    pieces = []
    if dims == 1:
        pts = torch.stack([z[:, 0], torch.zeros(n, dtype=z.dtype)], 1)
        axes, how = ("z_0", ""), "the one latent dimension"
    elif dims == 2:
        pts, axes, how = z, ("z_0", "z_1"), "the two latent dimensions"
    else:
        centred = z - z.mean(0)
        # principal axes from the SVD of the centred means (exact, and L is small)
        _, s, vt = torch.linalg.svd(centred, full_matrices=False)
        pts = centred @ vt[:2].T
        share = (s[:2].square().sum() / s.square().sum()).item()
        axes = ("principal component 1", "principal component 2")
        how = f"PCA of the {dims}-dimensional means ({100 * share:.0f}% of their variance)"
    title = f"posterior means of {n:,} {split} examples: {how}"
    pieces.append(image(figures.latent_map(pts.numpy(), labels, title, axes), "latent map"))
    if dims > 2 and n >= UMAP_MIN_POINTS and importlib.util.find_spec("umap") is not None:
        import umap  # optional: only when the user installed umap-learn

        m = min(n, UMAP_POINTS)
        with warnings.catch_warnings():  # seeded means one thread; umap says so every time
            warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
            emb = umap.UMAP(n_components=2, random_state=0).fit_transform(z[:m].numpy())
        sub = None if labels is None else labels[:m]
        pieces.append(
            image(
                figures.latent_map(
                    emb, sub, f"UMAP of {m:,} posterior means", ("UMAP 1", "UMAP 2")
                ),
                "UMAP latent map",
            )
        )
    return "".join(pieces)


def image_sections(model, x: torch.Tensor, lat: Latents, split: str = "test") -> list[Section]:
    """Samples, reconstructions, interpolations and traversals as embedded PNG grids."""
    model = model.to("cpu")
    out = []
    s = samples(model, 64, seed=0)
    out.append(
        Section(
            "samples",
            "Samples",
            image(
                grid_png(s, nrow=8, min_width=448),
                "samples",
                "64 decoded prior draws z ~ p(z): the likelihood's mean",
            ),
        )
    )
    width = grid_width(x.shape[0])
    r = reconstructions(model, x[:24].cpu(), per_row=width)
    out.append(
        Section(
            "reconstructions",
            "Reconstructions",
            image(
                grid_png(r, nrow=width, row_labels=["original", "reconstruction"], min_width=448),
                "reconstructions",
                f"{split} examples and the decoded mean of their posterior mean",
            ),
        )
    )
    pairs = min(4, x.shape[0] // 2)  # a small test split may hold fewer than 8 examples
    if pairs:
        a, b = x[0 : 2 * pairs : 2].cpu(), x[1 : 2 * pairs : 2].cpu()
        inter = interpolations(model, a, b, steps=10)
        out.append(
            Section(
                "interpolations",
                "Interpolations",
                image(
                    grid_png(inter, nrow=10, min_width=560),
                    "interpolations",
                    "decoded means along straight lines between the posterior "
                    f"means of two {split} examples",
                ),
            )
        )
    if not isinstance(model, OwnImportanceWeights):
        out.append(_traversal_section(model, lat, split))
    return out


def _most_active(lat: Latents, count: int) -> list[int]:
    if lat.kl is not None:
        score = lat.kl.double().mean(0)
    else:
        score = lat.mean.double().var(0)
    return score.argsort(descending=True)[:count].tolist()


def _traversal_section(
    model, lat: Latents, split: str, count: int = 6, examples: int = 2
) -> Section:
    dims = _most_active(lat, min(count, lat.mean.shape[1]))
    # a split of one example has one row per dimension: the labels and caption must say so
    examples = min(examples, lat.mean.shape[0])
    z0 = lat.mean[:examples].to(next(model.parameters()).dtype)
    imgs = traversals(model, z0, dims, steps=9, span=3.0)
    labels = [f"z_{d}" for d in dims for _ in range(examples)]
    body = image(
        grid_png(imgs, nrow=9, row_labels=labels, min_width=504),
        "latent traversals",
        f"the {len(dims)} dimensions with the largest KL, each swept from −3 to +3 prior "
        f"standard deviations (left to right), the others at the posterior mean of "
        f"{examples} {split} example{'s' if examples != 1 else ''} (one row each)",
    )
    return Section("traversals", "Latent traversals", body)


@torch.no_grad()
def table_sections(model, data, split: str, columns: list[str] | None) -> list[Section]:
    """Samples and reconstructions as tables in the data's units, the reconstruction error of
    each column, and the per-row log p(x) with the least likely rows."""
    model = model.to("cpu")
    x = data.eval_data(split).cpu()
    d = x.shape[1]
    columns = list(columns) if columns and len(columns) == d else [f"x{i}" for i in range(d)]
    to_units = data.prep.to_original
    out = []
    s = to_units(samples(model, 10, seed=0)).numpy()
    note = paragraph("10 decoded prior draws (the likelihood's mean), in the data's units", "note")
    out.append(Section("samples", "Samples", _table_of_rows(s, columns) + note))
    # the rows as the file has them (standardizing and back adds float32 noise), as reconstruct
    orig = data.originals(split).to(x.dtype).reshape(x.shape).cpu()
    recon = to_units(model.decode(model.encode(x).mean).mean)
    shown = min(5, x.shape[0])
    pair = np.empty((2 * shown, d))
    pair[0::2], pair[1::2] = orig[:shown].numpy(), recon[:shown].numpy()
    where = data.where(split)
    kinds = [
        f"{kind} ({where[i]})" if where is not None else kind
        for i in range(shown)
        for kind in ("original", "reconstruction")
    ]
    body = _table_of_rows(pair, columns, ["row", kinds])
    rmse = (recon - orig).double().square().mean(0).sqrt().numpy()
    body += image(
        figures.column_bars(
            columns,
            rmse,
            f"reconstruction error per column ({split} split)",
            "RMSE in the data's units",
        ),
        "reconstruction error per column",
    )
    body += table(
        ["column", "RMSE", "spread (sd)", "RMSE / sd"],
        [
            [c, number(float(e)), number(float(sd)), number(float(e / sd) if sd > 0 else None)]
            for c, e, sd in zip(columns, rmse, _spread(orig), strict=True)
        ],
        numeric={1, 2, 3},
    )
    out.append(Section("reconstructions", "Reconstructions", body))
    out.append(_likelihood_section(model, data, split, x, orig.numpy(), columns))
    return out


def _likelihood_section(model, data, split, x, orig, columns) -> Section:
    n = min(x.shape[0], SCORED_ROWS)
    res = evaluate_model(model, x[:n], k=SCORE_K, seed=data.cfg.eval_seed, per_example=True)
    log_px = (res["per_example"]["log_px"].cpu() - data.log_jacobian).numpy()
    order = np.argsort(log_px)[:LEAST_LIKELY]
    where = data.where(split)
    labels = data.labels(split)
    body = image(
        figures.histogram(
            log_px,
            f"log p(x) of {n:,} {split} rows (K = {SCORE_K})",
            "log p(x), nats, in the data's units",
            log_px[order],
        ),
        "histogram of per-row log p(x)",
        "the least likely rows are marked in red and listed below",
    )
    lead = [
        (f"#{i}" if where is None else where[i])
        + ("" if labels is None else f" (label {np.asarray(labels)[i]})")
        + f": {number(float(log_px[i]))}"
        for i in order
    ]
    body += "<h3>Least likely rows</h3>" + _table_of_rows(
        orig[order], columns, [f"row (id, label): log p(x), K = {SCORE_K}", lead]
    )
    if data.ids(split) is None and data.file_rows(split) is not None:
        body += paragraph("file rows are counted from 1, the first row of data", "note")
    bad = int((~np.isfinite(log_px)).sum())
    if bad:
        body += paragraph(
            f"{bad:,} of {n:,} rows have a non-finite log p(x) (left out of the histogram)", "note"
        )
    return Section("likelihood", "Per-row log-likelihood", body)


def _spread(values: torch.Tensor) -> np.ndarray:
    """Each column's standard deviation over the rows (0 for a single row: no spread to show)."""
    if values.shape[0] < 2:
        return np.zeros(values.shape[1])
    return values.double().std(0).numpy()

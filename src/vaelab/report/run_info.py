"""The report's sections that need no model: what the run is, how it trained, its evaluation,
and the inference gaps when they were computed."""

from __future__ import annotations

import json
import shlex

from vaelab.report import figures
from vaelab.report.html import Section, image, number, paragraph, preformatted, table, with_se

NOT_RECORDED = "not recorded"


def _provenance(meta: dict) -> dict:
    p = meta.get("provenance")
    return p if isinstance(p, dict) else {}


def _commands(meta: dict) -> list[str]:
    """The command lines that wrote the run (the first train, then each resume)."""
    commands = _provenance(meta).get("commands")
    if not isinstance(commands, list):
        return []
    return [shlex.join(map(str, c)) for c in commands if isinstance(c, list)]


def run_section(run_dir, meta: dict, data_record: dict, metrics: list[dict]) -> Section:
    """Dataset and preparation, model, objective, command line, versions, training time and
    the whole config (every value escaped, the config as JSON text)."""
    run = meta.get("run") if isinstance(meta.get("run"), dict) else {}
    model_cfg = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    train = run.get("train") if isinstance(run.get("train"), dict) else {}
    prov = _provenance(meta)
    seconds = sum(
        r["epoch_seconds"] for r in metrics if isinstance(r.get("epoch_seconds"), (int, float))
    )
    best = [r for r in metrics if r.get("best")]
    source = data_record.get("source") if isinstance(data_record.get("source"), dict) else {}
    shape = model_cfg.get("data_shape")
    hidden = model_cfg.get("hidden")
    arch = (
        f"{meta.get('class', '?')} ({model_cfg.get('arch', '?')}), hidden {hidden}, "
        f"latent dimensions {model_cfg.get('latent_dim', '?')}, "
        f"activation {model_cfg.get('activation', '?')}"
    )
    objective = (
        f"{train.get('objective', '?')} (k={train.get('k', '?')}, "
        f"estimator {train.get('estimator', '?')}, β={train.get('beta', '?')}, KL warm-up "
        f"{train.get('kl_warmup_epochs', '?')} epochs); optimizer {train.get('optimizer', '?')}, "
        f"lr {train.get('lr', '?')} ({train.get('schedule', '?')}), batch "
        f"{train.get('batch_size', '?')}, seed {train.get('seed', '?')}"
    )
    rows = [
        ["run folder", str(run_dir)],
        ["dataset", data_record.get("dataset", run.get("data", {}).get("dataset", "?"))],
        ["data kind", data_record.get("kind", source.get("kind", NOT_RECORDED))],
        ["shape of one example", shape],
        ["binarization", data_record.get("binarization", NOT_RECORDED)],
        ["dequantized", data_record.get("dequantized", NOT_RECORDED)],
        ["units the model sees", data_record.get("units", NOT_RECORDED)],
        ["model", arch],
        ["likelihood p(x|z)", model_cfg.get("likelihood", "?")],
        ["prior", f"N(0, {model_cfg.get('prior_std', 1.0)}² I)"],
        ["objective", objective],
        ["command line", "\n".join(_commands(meta)) or NOT_RECORDED],
        ["vaelab version", prov.get("vaelab", NOT_RECORDED)],
        ["torch version", prov.get("torch", NOT_RECORDED)],
        [
            "training",
            f"{len(metrics)} epochs in {seconds / 60:.1f} min (sum of epoch times)"
            if metrics
            else "no metrics.jsonl: " + NOT_RECORDED,
        ],
        [
            "best validation ELBO",
            f"{number(best[-1].get('val_elbo'))} at epoch {best[-1]['epoch']}"
            if best
            else NOT_RECORDED,
        ],
    ]
    body = table(["", ""], rows)
    # folded: a table run's config holds its per-column statistics, pages of numbers
    body += (
        "<details><summary>config.json (the whole run config, as saved)</summary>"
        + preformatted(json.dumps(meta, indent=1, sort_keys=True))
        + "</details>"
    )
    return Section("run", "The run", body)


def curves_section(metrics: list[dict]) -> Section:
    png = figures.learning_curves(metrics)
    if png is None:
        body = paragraph("No learning curves: the run has no metrics.jsonl.", "note")
    else:
        body = image(png, "learning curves", "per epoch: ELBO, its two terms, learning rate, "
                     "skipped (non-finite) steps")  # fmt: skip
    return Section("curves", "Learning curves", body)


_EVAL_ROWS = (
    ("log-likelihood log p(x)", "log_likelihood", 3),
    ("NLL", "nll", 3),
    ("NLL in the data's units", "nll_original", 3),
    ("bits/dim", "bits_per_dim", 4),
    ("ELBO", "elbo", 3),
    ("reconstruction E_q[log p(x|z)]", "reconstruction", 3),
    ("KL(q ‖ p(z))", "kl", 3),
    ("log p(x) − ELBO", "gap", 3),
)


def evaluation_section(report: dict | None, run_dir) -> Section:
    """The saved test evaluation: every number with its standard error, K, split and data."""
    if report is None:
        body = paragraph(
            f"No evaluation saved in this run: `vaelab evaluate {run_dir} --k 5000` computes it.",
            "note",
        )
        return Section("evaluation", "Evaluation", body)
    rows = []
    for name, key, digits in _EVAL_ROWS:
        if report.get(key) is not None:
            rows.append([name, with_se(report[key], report.get(f"{key}_stderr"), digits)])
    rows += [
        ["importance samples K", number(report.get("k"))],
        ["split, examples", f"{report.get('split', '?')}, n = {number(report.get('n'))}"],
        ["binarization", report.get("binarization", NOT_RECORDED)],
        ["units (standardization)", report.get("units", NOT_RECORDED)],
        ["active units", f"{report.get('active_units', '?')} of {report.get('latent_dim', '?')}"],
        ["time", f"{number(report.get('seconds'), 1)} s"],
    ]
    body = table(["", "mean ± standard error over examples"], rows, numeric={1})
    body += paragraph(
        f"log p(x) is importance-sampled with K = {report.get('k')} draws from q(z|x) (a lower "
        "bound in expectation); the ELBO uses the closed-form KL.",
        "note",
    )
    return Section("evaluation", "Evaluation", body)


GAPS_TEXT = (
    "log p(x) − ELBO(encoder) splits in two (Cremer, Li & Duvenaud 2018, Inference "
    "Suboptimality in Variational Autoencoders). The approximation gap, log p(x) − ELBO(q*), is "
    "KL(q* ‖ p(z|x)) for the best diagonal Gaussian q* of each example: what the Gaussian family "
    "cannot express of the true posterior. The amortization gap, ELBO(q*) − ELBO(encoder), is "
    "what one encoder shared by all examples loses against a q fitted to each example. q* is "
    "fitted per example by maximizing its ELBO, started at the encoder's q; log p(x) is "
    "importance-sampled from the mixture ½ q* + ½ q* widened 3 times (a proposal as narrow as q* "
    "alone would underestimate it)."
)


def gaps_section(gaps: dict) -> Section:
    rows = [
        [label, with_se(gaps.get(key), gaps.get(f"{key}_stderr"))]
        for label, key in (
            (f"log p(x) (K = {gaps.get('k')}, around q*)", "log_likelihood"),
            ("ELBO of the best Gaussian q*", "elbo_best"),
            ("ELBO of the encoder", "elbo"),
            ("approximation gap log p(x) − ELBO(q*)", "approximation_gap"),
            ("amortization gap ELBO(q*) − ELBO(encoder)", "amortization_gap"),
        )
    ]
    rows.append(["examples", f"first {number(gaps.get('n'))} of the {gaps.get('split')} split"])
    body = table(["", "nats, mean ± standard error"], rows, numeric={1}) + paragraph(GAPS_TEXT)
    return Section("gaps", "Inference gaps", body)

"""The per-epoch progress bar: steps done, the running bound and its terms, images/s, lr."""

from __future__ import annotations

import sys

from vaelab.training.state import TrainState


class EpochBar:
    """A tqdm bar over one epoch's steps; does nothing when ``enabled`` is false."""

    def __init__(self, enabled: bool, epoch: int, epochs: int, steps: int, start: int, iwae: bool):
        self.iwae = iwae
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=steps,
                initial=start,
                desc=f"epoch {epoch + 1}/{epochs}",
                unit="step",
                leave=False,
                dynamic_ncols=True,
                file=sys.stderr,
            )

    def update(self, s: TrainState, images_per_s: float, lr: float) -> None:
        if self.bar is None:
            return
        bound, elbo, rec, kl = (v / max(s.seen, 1) for v in s.sums)
        post = {"elbo": f"{elbo:.2f}", "rec": f"{rec:.2f}", "kl": f"{kl:.2f}"}
        if self.iwae:
            post = {"iwae": f"{bound:.2f}", "elbo": f"{elbo:.2f}"}
        post["img/s"] = f"{images_per_s:,.0f}"
        post["lr"] = f"{lr:.2g}"
        self.bar.n = s.step_in_epoch
        self.bar.set_postfix(post, refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

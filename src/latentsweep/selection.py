"""Choosing the latent size by an explicit rule, and the sentences that state the result.

Rule: take each latent size's mean PSNR over the whole test set (the mean over seeds when there
are several); the best size is the one with the highest value; the selected size is the
smallest whose value is within `tolerance_db` of the best. Every sentence below is built from
the numbers passed in, never written by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from latentsweep.metrics import lookup


@dataclass(frozen=True)
class Selection:
    selected: int
    best: int
    selected_psnr: float
    best_psnr: float
    tolerance_db: float

    @property
    def threshold_db(self) -> float:
        return self.best_psnr - self.tolerance_db


def rule_text(tolerance_db: float) -> str:
    return (f"the smallest latent size whose mean PSNR over the whole test set is within "
            f"{tolerance_db:g} dB of the best latent size's")


def select_latent_dim(mean_psnr: Mapping[int, float], tolerance_db: float) -> Selection:
    """Apply the rule to {latent size: mean test-set PSNR}."""
    if not mean_psnr:
        raise ValueError("no latent sizes to choose from")
    best = max(sorted(mean_psnr), key=lambda dim: mean_psnr[dim])  # ties go to the smaller size
    threshold = mean_psnr[best] - tolerance_db
    selected = min(dim for dim, value in mean_psnr.items() if value >= threshold)
    return Selection(selected, best, mean_psnr[selected], mean_psnr[best], tolerance_db)


def overall_psnr(combined_rows: Iterable[Mapping[str, Any]]) -> dict[int, float]:
    """{latent size: whole-test-set mean PSNR} from seed-combined tidy rows."""
    return {row["latent_dim"]: row["mean"]
            for row in lookup(combined_rows, protocol="test_set", digit="all", metric="psnr")}


def easiest_and_hardest(combined_rows: Iterable[Mapping[str, Any]], latent_dim: int) -> tuple[str, str]:
    """Classes with the highest and the lowest test-set mean PSNR at `latent_dim`."""
    per_class = {row["digit"]: row["mean"] for row in lookup(combined_rows, protocol="test_set", metric="psnr", latent_dim=latent_dim)
                 if row["digit"] != "all"}
    ranked = sorted(per_class, key=lambda digit: per_class[digit])
    return ranked[-1], ranked[0]


def conclusion(combined_rows: Sequence[Mapping[str, Any]], tolerance_db: float,
               class_names: Sequence[str], noun: str = "digit") -> tuple[Selection, list[str]]:
    """The selection and the report's conclusion sentences, all generated from the table."""
    psnr = overall_psnr(combined_rows)
    selection = select_latent_dim(psnr, tolerance_db)
    easiest, hardest = easiest_and_hardest(combined_rows, selection.selected)

    def class_psnr(digit: str) -> float:
        return lookup(combined_rows, protocol="test_set", metric="psnr", latent_dim=selection.selected, digit=digit)[0]["mean"]

    sizes = sorted(psnr)
    sentences = [
        f"Selected latent size: {selection.selected}. Rule: {rule_text(tolerance_db)}.",
        f"The best latent size is {selection.best} with {selection.best_psnr:.2f} dB; latent size "
        f"{selection.selected} reaches {selection.selected_psnr:.2f} dB, "
        f"{selection.best_psnr - selection.selected_psnr:.2f} dB below it (threshold {selection.threshold_db:.2f} dB).",
    ]
    smaller = [dim for dim in sizes if dim < selection.selected]
    if smaller:
        below = max(smaller)
        sentences.append(f"The next smaller size, {below}, reaches {psnr[below]:.2f} dB, "
                         f"{selection.best_psnr - psnr[below]:.2f} dB below the best, outside the tolerance.")
    else:
        sentences.append(f"{selection.selected} is the smallest size tried; smaller sizes may also qualify.")
    sentences.append(
        f"At latent size {selection.selected} the easiest {noun} is {class_names[int(easiest)]} "
        f"({class_psnr(easiest):.2f} dB) and the hardest is {class_names[int(hardest)]} ({class_psnr(hardest):.2f} dB).")
    gains = [f"{a}->{b}: {psnr[b] - psnr[a]:+.2f} dB" for a, b in zip(sizes, sizes[1:])]
    if gains:
        sentences.append("PSNR change between consecutive sizes: " + ", ".join(gains) + ".")
    return selection, sentences

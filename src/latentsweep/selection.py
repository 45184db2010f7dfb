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
            for row in lookup(combined_rows, protocol="test_set", cls="all", metric="psnr")}


def easiest_and_hardest(combined_rows: Iterable[Mapping[str, Any]], latent_dim: int) -> tuple[str, str]:
    """Classes with the highest and the lowest test-set mean PSNR at `latent_dim`."""
    per_class = {row["class"]: row["mean"] for row in lookup(combined_rows, protocol="test_set", metric="psnr", latent_dim=latent_dim)
                 if row["class"] != "all"}
    ranked = sorted(per_class, key=lambda digit: per_class[digit])
    return ranked[-1], ranked[0]


def conclusion(combined_rows: Sequence[Mapping[str, Any]], tolerance_db: float,
               class_names: Sequence[str], noun: str = "digit",
               label: str = "Selected latent size") -> tuple[Selection, list[str]]:
    """The selection and the report's conclusion sentences, all generated from the table."""
    psnr = overall_psnr(combined_rows)
    selection = select_latent_dim(psnr, tolerance_db)
    easiest, hardest = easiest_and_hardest(combined_rows, selection.selected)

    def class_psnr(name: str) -> float:
        return lookup(combined_rows, protocol="test_set", metric="psnr", latent_dim=selection.selected, cls=name)[0]["mean"]

    sizes = sorted(psnr)
    sentences = [
        f"{label}: {selection.selected}. Rule: {rule_text(tolerance_db)}.",
        (f"Latent size {selection.selected} is also the best, with {selection.best_psnr:.2f} dB."
         if selection.selected == selection.best else
         f"The best latent size is {selection.best} with {selection.best_psnr:.2f} dB; latent size "
         f"{selection.selected} reaches {selection.selected_psnr:.2f} dB, "
         f"{selection.best_psnr - selection.selected_psnr:.2f} dB below it (threshold {selection.threshold_db:.2f} dB)."),
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


# ----------------------------------------------------------------------------------------
# Reconstruction and generation together


def combined_rule_text(tolerance_db: float, fd_tolerance: float) -> str:
    return (f"the smallest latent size that passes both tests: its whole-test-set mean PSNR is within {tolerance_db:g} dB "
            f"of the best size's, and the Fréchet distance of its prior samples is within {100 * fd_tolerance:g}% of the "
            "lowest (best) Fréchet distance of any size; if no size passes both, the reconstruction rule alone decides")


@dataclass(frozen=True)
class CombinedSelection:
    selected: int
    passes_reconstruction: tuple[int, ...]
    passes_generation: tuple[int, ...]
    best_fd_size: int
    fell_back: bool


def select_combined(mean_psnr: Mapping[int, float], fd: Mapping[int, float], tolerance_db: float,
                    fd_tolerance: float) -> CombinedSelection:
    reconstruction = select_latent_dim(mean_psnr, tolerance_db)
    passes_reconstruction = tuple(sorted(d for d, v in mean_psnr.items() if v >= reconstruction.threshold_db))
    best_fd_size = min(sorted(fd), key=lambda d: fd[d])
    passes_generation = tuple(sorted(d for d, v in fd.items() if v <= fd[best_fd_size] * (1 + fd_tolerance)))
    both = sorted(set(passes_reconstruction) & set(passes_generation))
    if both:
        return CombinedSelection(both[0], passes_reconstruction, passes_generation, best_fd_size, False)
    return CombinedSelection(reconstruction.selected, passes_reconstruction, passes_generation, best_fd_size, True)


def combined_rule_applies(psnr: Mapping[int, float], fd: Mapping[int, float] | None) -> bool:
    """The combined rule decides where every size has a Fréchet distance; else the reconstruction rule
    alone (the study's answer, final_selection, and its bootstrap, uncertainty.selection_rule)."""
    return bool(fd) and set(fd) == set(psnr)


def final_selection(combined: Sequence[Mapping[str, Any]], tolerance_db: float, fd_tolerance: float) -> tuple[int, list[str]]:
    """The answer for one variant's rows: the combined rule where generation metrics exist, else the
    reconstruction rule."""
    psnr = overall_psnr(combined)
    fd = {r["latent_dim"]: r["mean"] for r in lookup(combined, metric="fd", protocol="prior_samples", cls="all")}
    if not combined_rule_applies(psnr, fd):
        return select_latent_dim(psnr, tolerance_db).selected, []
    chosen = select_combined(psnr, fd, tolerance_db, fd_tolerance)
    sentences = [
        f"Combined selection (reconstruction and generation): latent size {chosen.selected}. Rule: "
        f"{combined_rule_text(tolerance_db, fd_tolerance)}.",
        f"Sizes passing the reconstruction test: {', '.join(map(str, chosen.passes_reconstruction))}; passing the "
        f"generation test: {', '.join(map(str, chosen.passes_generation))} (lowest Fréchet distance "
        f"{fd[chosen.best_fd_size]:.2f} at size {chosen.best_fd_size})."
        + (" No size passes both, so the reconstruction rule decides." if chosen.fell_back else ""),
    ]
    return chosen.selected, sentences

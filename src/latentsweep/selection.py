"""Choosing the latent size by an explicit rule, and the sentences that state the result.

Reconstruction rule: take each latent size's mean PSNR over the whole test set (the mean over seeds
when there are several); the best size is the one with the highest value; the selected size is the
smallest whose value is within `tolerance_db` of the best.

Combined rule (the study's answer wherever every size has generation metrics): the smallest size that
passes the reconstruction test and whose prior samples' Fréchet distance is within `fd_tolerance` of the
lowest; where no size passes both, the reconstruction rule decides.

`decide` applies them to one variant's rows and is the one place the answer is decided. Every
sentence below is built from the numbers passed in, never written by hand.
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
    alone (the study's answer, decide, and its bootstrap, uncertainty.selection_rule)."""
    return bool(fd) and set(fd) == set(psnr)


def decide(combined: Sequence[Mapping[str, Any]], tolerance_db: float, fd_tolerance: float,
           class_names: Sequence[str], noun: str = "digit") -> Answer:
    """The study's answer for one variant's seed-combined rows, and every sentence that states it.

    The combined rule decides where every size has a Fréchet distance of its prior samples, else the
    reconstruction rule alone (combined_rule_applies). This is the only place the answer is decided:
    the report, the explorer, the command line's summary, export and load_study all read it from here
    (results.read_results)."""
    psnr = overall_psnr(combined)
    fd = {r["latent_dim"]: r["mean"] for r in lookup(combined, metric="fd", protocol="prior_samples", cls="all")}
    reconstruction = select_latent_dim(psnr, tolerance_db)
    rule_sentences: list[str] = []
    chosen = None
    if combined_rule_applies(psnr, fd):
        chosen = select_combined(psnr, fd, tolerance_db, fd_tolerance)
        rule_sentences = [
            f"Combined selection (reconstruction and generation): latent size {chosen.selected}. Rule: "
            f"{combined_rule_text(tolerance_db, fd_tolerance)}.",
            f"Sizes passing the reconstruction test: {', '.join(map(str, chosen.passes_reconstruction))}; passing the "
            f"generation test: {', '.join(map(str, chosen.passes_generation))} (lowest Fréchet distance "
            f"{fd[chosen.best_fd_size]:.2f} at size {chosen.best_fd_size})."
            + (" No size passes both, so the reconstruction rule decides." if chosen.fell_back else ""),
        ]
    selected = chosen.selected if chosen else reconstruction.selected
    label = "Reconstruction rule alone, latent size" if chosen else "Selected latent size"
    sentences = _answer_sentences(combined, psnr, fd if chosen else {}, reconstruction, selected, tolerance_db,
                                  fd_tolerance, class_names, noun, label)
    headline = (rule_sentences[:1] + sentences[1:2]) if chosen else sentences[:2]
    return Answer(selected, "combined" if chosen else "reconstruction", reconstruction,
                  tuple(rule_sentences + sentences), tuple(headline))


@dataclass(frozen=True)
class Answer:
    """One variant's answer: the size, the rule that decided it, and the sentences that say so."""

    selected: int
    rule: str  # "combined" (reconstruction and generation) or "reconstruction"
    reconstruction: Selection  # what the reconstruction rule alone picks, and the best size's PSNR
    sentences: tuple[str, ...]  # the conclusion, every number from the rows
    headline: tuple[str, ...]  # its first lines: the answer and how far it is from the best


def _answer_sentences(combined: Sequence[Mapping[str, Any]], psnr: Mapping[int, float], fd: Mapping[int, float],
                      reconstruction: Selection, selected: int, tolerance_db: float, fd_tolerance: float,
                      class_names: Sequence[str], noun: str, label: str) -> list[str]:
    """The reconstruction rule's pick, then the answer (`selected`) against the best size, the next smaller
    size and why it fails, the easiest and hardest class at the answer, and the gains between sizes."""
    best, best_psnr, threshold = reconstruction.best, reconstruction.best_psnr, reconstruction.threshold_db
    easiest, hardest = easiest_and_hardest(combined, selected)

    def class_psnr(name: str) -> float:
        return lookup(combined, protocol="test_set", metric="psnr", latent_dim=selected, cls=name)[0]["mean"]

    sizes = sorted(psnr)
    sentences = [
        f"{label}: {reconstruction.selected}. Rule: {rule_text(tolerance_db)}.",
        (f"Latent size {selected} is also the best, with {best_psnr:.2f} dB." if selected == best else
         f"The best latent size is {best} with {best_psnr:.2f} dB; latent size {selected} reaches "
         f"{psnr[selected]:.2f} dB, {best_psnr - psnr[selected]:.2f} dB below it (threshold {threshold:.2f} dB)."),
    ]
    smaller = [dim for dim in sizes if dim < selected]
    if not smaller:
        sentences.append(f"{selected} is the smallest size tried; smaller sizes may also qualify.")
    elif psnr[max(smaller)] < threshold:
        below = max(smaller)
        sentences.append(f"The next smaller size, {below}, reaches {psnr[below]:.2f} dB, "
                         f"{best_psnr - psnr[below]:.2f} dB below the best, outside the tolerance.")
    else:  # within the PSNR tolerance, so the generation test refused it
        below = max(smaller)
        lowest = min(fd.values())
        sentences.append(f"The next smaller size, {below}, reaches {psnr[below]:.2f} dB, within the tolerance, but the "
                         f"Fréchet distance of its prior samples, {fd[below]:.2f}, is more than "
                         f"{100 * fd_tolerance:g}% above the lowest ({lowest:.2f}).")
    sentences.append(
        f"At latent size {selected} the easiest {noun} is {class_names[int(easiest)]} "
        f"({class_psnr(easiest):.2f} dB) and the hardest is {class_names[int(hardest)]} ({class_psnr(hardest):.2f} dB).")
    gains = [f"{a}->{b}: {psnr[b] - psnr[a]:+.2f} dB" for a, b in zip(sizes, sizes[1:])]
    if gains:
        sentences.append("PSNR change between consecutive sizes: " + ", ".join(gains) + ".")
    return sentences

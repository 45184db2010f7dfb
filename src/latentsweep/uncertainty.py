"""How sure the answer is: the rule per seed, the chance each size is selected, tests between sizes.

Two kinds of randomness stand behind a latent size's mean PSNR: the training run (its seed) and
the test images it is scored on. Each function here says which it covers:

  per-seed rule        training seeds only: the rule applied to each seed's models alone
  selection bootstrap  both: seeds drawn with replacement, independently per size (each size's
                       models are separate training runs), and test images drawn with
                       replacement, the same draw for every size (they are scored on the same
                       images); the Fréchet distance of the prior samples is resampled over seeds
                       only, since it is one number per model
  paired image test    test images only: per-image PSNR averaged over seeds, larger size minus smaller
  seed test            training seeds only: Welch's t-test on the seeds' whole-test-set means

Pure functions of arrays, up to `gather_evidence`, which does all of it for one variant's answer; the
arrays come from the study's files (results.model_scores).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from latentsweep.metrics import mean_confidence_interval
from latentsweep.selection import apply_rule

CONFIDENCE = 0.95  # the share of bootstrap replicates the answer's set of likely sizes covers

# {latent size: mean PSNR}, {latent size: mean FD} or None -> the selected size
Rule = Callable[[Mapping[int, float], Mapping[int, float] | None], int]


def selection_rule(tolerance_db: float, fd_tolerance: float, grid_sizes: Sequence[int] | None = None) -> Rule:
    """The study's rule as a function of the means of every tested size, decided as selection.decide decides
    it: the grid's sizes (default: all) fix the reference, the others refine the grid's answer."""
    def rule(psnr: Mapping[int, float], fd: Mapping[int, float] | None) -> int:
        return apply_rule(psnr, fd, tolerance_db, fd_tolerance, grid_sizes).selected
    return rule


def selected_per_seed(psnr: Mapping[int, np.ndarray], fd: Mapping[int, np.ndarray] | None, rule: Rule) -> list[int]:
    """The size the rule picks from each seed's models alone. psnr[size] holds a (seeds, images)
    array of per-image PSNR and fd[size] a (seeds,) array, the seeds in the same order for every size."""
    seeds = _seed_count(psnr)
    return [rule({size: float(values[s].mean()) for size, values in psnr.items()},
                 None if fd is None else {size: float(values[s]) for size, values in fd.items()})
            for s in range(seeds)]


def selection_probabilities(psnr: Mapping[int, np.ndarray], fd: Mapping[int, np.ndarray] | None, rule: Rule,
                            replicates: int = 2000, seed: int = 0) -> dict[int, float]:
    """Each size's share of bootstrap replicates in which the rule selects it (see the module's text
    for what is resampled). psnr[size] is (seeds, images), fd[size] (seeds,); sizes may have different
    numbers of seeds. The shares sum to 1; sizes never selected get 0."""
    sizes = sorted(psnr)
    images = next(iter(psnr.values())).shape[1]
    rng = np.random.default_rng(seed)
    counts = dict.fromkeys(sizes, 0)
    for _ in range(replicates):
        drawn_images = rng.integers(0, images, images)  # one draw for every size: the same test images
        drawn = {size: rng.integers(0, len(psnr[size]), len(psnr[size])) for size in sizes}
        mean_psnr = {size: float(psnr[size][drawn[size]][:, drawn_images].mean()) for size in sizes}
        mean_fd = None if fd is None else {size: float(fd[size][drawn[size]].mean()) for size in sizes}
        counts[rule(mean_psnr, mean_fd)] += 1
    return {size: counts[size] / replicates for size in sizes}


@dataclass(frozen=True)
class SeedComparison:
    """Welch's t-test on the seeds' whole-test-set mean PSNR of two sizes (training randomness only)."""

    smaller: int
    larger: int
    n_seeds: tuple[int, int]
    mean_difference_db: float  # larger minus smaller
    ci_low: float
    ci_high: float
    p_value: float

    def sentence(self, alpha: float = 0.05) -> str:
        verdict = "differs significantly from" if self.p_value < alpha else "does not differ significantly from"
        return (f"Across training seeds, latent size {self.smaller} {verdict} size {self.larger} (Welch's t-test on the "
                f"whole-test-set mean PSNR of {self.n_seeds[0]} and {self.n_seeds[1]} seeds, the test images fixed: "
                f"gain of the larger size {self.mean_difference_db:+.3f} dB, 95% CI [{self.ci_low:+.3f}, "
                f"{self.ci_high:+.3f}], {p_text(self.p_value)}).")


def seed_comparison(smaller: int, larger: int, means_smaller: np.ndarray, means_larger: np.ndarray) -> SeedComparison:
    """Welch's t-test and interval for the difference of two sizes' means over their seeds (2 or more each)."""
    from scipy import stats

    a, b = np.asarray(means_smaller, np.float64), np.asarray(means_larger, np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("a test across seeds needs at least two seeds per size")
    result = stats.ttest_ind(b, a, equal_var=False)
    interval = result.confidence_interval(0.95)
    return SeedComparison(smaller, larger, (len(a), len(b)), float(b.mean() - a.mean()), float(interval.low),
                          float(interval.high), float(result.pvalue))


@dataclass(frozen=True)
class PairedComparison:
    """Paired tests of per-image PSNR of two sizes (test-image randomness only)."""

    smaller: int
    larger: int
    n_images: int
    n_seeds: int
    mean_difference_db: float  # larger minus smaller, PSNR
    ci_low: float
    ci_high: float
    t_p_value: float
    wilcoxon_p_value: float

    def sentence(self, alpha: float = 0.05) -> str:
        verdict = "differs significantly from" if self.t_p_value < alpha else "does not differ significantly from"
        averaged = f", each averaged over {self.n_seeds} seeds" if self.n_seeds > 1 else ""
        return (f"Over test images, latent size {self.smaller} {verdict} the next larger size {self.larger} in per-image "
                f"PSNR (paired t-test over {self.n_images:,} test images{averaged}, the trained models fixed: "
                f"mean gain of the larger size {self.mean_difference_db:+.3f} dB, 95% CI [{self.ci_low:+.3f}, "
                f"{self.ci_high:+.3f}], {p_text(self.t_p_value)}; Wilcoxon signed-rank {p_text(self.wilcoxon_p_value)}; "
                f"alpha = {alpha}).")


def paired_comparison(smaller: int, larger: int, psnr_smaller: np.ndarray, psnr_larger: np.ndarray) -> PairedComparison:
    """Paired tests of per-image PSNR, larger minus smaller. Inputs are (seeds, images) arrays whose
    columns are the same test images; each image's PSNR is first averaged over seeds."""
    from scipy import stats

    a, b = np.atleast_2d(psnr_smaller).mean(0), np.atleast_2d(psnr_larger).mean(0)
    differences = b - a
    mean, low, high = mean_confidence_interval(differences)
    t_p = float(stats.ttest_rel(b, a).pvalue) if np.any(differences != differences[0]) else (0.0 if mean != 0 else 1.0)
    w_p = float(stats.wilcoxon(differences).pvalue) if np.any(differences != 0) else 1.0
    return PairedComparison(smaller, larger, len(differences), np.atleast_2d(psnr_smaller).shape[0], mean, low, high, t_p, w_p)


def p_text(p: float) -> str:
    """p-values as the report writes them; doubles underflow to 0 for overwhelming evidence."""
    return "p < 1e-16" if p < 1e-16 else f"p = {p:.2g}"


def _seed_count(psnr: Mapping[int, np.ndarray]) -> int:
    counts = {values.shape[0] for values in psnr.values()}
    if len(counts) != 1:
        raise ValueError(f"every latent size needs the same number of seeds, got {sorted(counts)}")
    return counts.pop()


# ----------------------------------------------------------------------------------------
# All of it for one variant's answer


@dataclass
class Evidence:
    """How sure one variant's answer is, from its models' per-image PSNR and prior-sample FD."""

    selected: int
    complete_seeds: list[int]  # seeds with a finished model at every size: the per-seed rule needs all
    per_seed: list[int]  # the size the rule picks from each of those seeds' models alone
    probabilities: dict[int, float]  # each size's share of the bootstrap replicates
    replicates: int
    seed_means: dict[int, dict[int, float]]  # size -> seed -> whole-test-set mean PSNR
    paired: PairedComparison | None  # selected size against the next larger one, over test images
    across_seeds: SeedComparison | None  # the same pair over training seeds (two or more each)

    @property
    def seeds_resampled(self) -> bool:
        return any(len(values) > 1 for values in self.seed_means.values())

    def likely_sizes(self, level: float = CONFIDENCE) -> tuple[list[int], float]:
        """The fewest sizes the bootstrap selects in at least `level` of its replicates (the most selected first),
        ascending, and the share they take together: the answer's uncertainty as a set of sizes."""
        chosen, share = [], 0.0
        for size, probability in sorted(self.probabilities.items(), key=lambda item: (-item[1], item[0])):
            if share >= level:
                break
            chosen.append(size)
            share += probability
        return sorted(chosen), share

    def sentences(self) -> list[str]:
        """The answer's robustness in words, every number from the arrays."""
        sizes, share = self.likely_sizes()
        which = f"size {sizes[0]}" if len(sizes) == 1 else "one of sizes " + ", ".join(map(str, sizes))
        sentences = [f"How sure: the bootstrap selects {which} in {share:.1%} of its replicates (the fewest sizes "
                     f"covering {CONFIDENCE:.0%})."]
        if len(self.complete_seeds) > 1:
            agree = sum(size == self.selected for size in self.per_seed)
            others = [f"{size} (seed {seed})" for seed, size in zip(self.complete_seeds, self.per_seed) if size != self.selected]
            sentences.append(f"Applied to each seed's models alone, the rule chooses latent size {self.selected} for {agree} "
                             f"of {len(self.per_seed)} seeds" + (f"; the others choose {', '.join(others)}." if others else "."))
        randomness = ("training seeds and test images" if self.seeds_resampled else
                      "test images only (one seed per size, so training randomness is not covered)")
        shares = sorted(((share, size) for size, share in self.probabilities.items() if share > 0), reverse=True)
        sentences.append(f"In {self.replicates:,} bootstrap replicates over {randomness}, the rule selects "
                         + ", ".join(f"size {size} in {share:.1%}" for share, size in shares) + " of them.")
        return sentences


def gather_evidence(psnr: Mapping[tuple[int, int], np.ndarray], fd: Mapping[tuple[int, int], float], selected: int,
                    rule: Rule, replicates: int = 2000) -> Evidence:
    """The per-seed rule, the selection bootstrap and the tests between the selected and the next larger size,
    from one variant's models, keyed by (latent size, seed): each one's per-image PSNR and prior-sample FD (where
    every model has one, the bootstrap resamples it too)."""
    sizes = sorted({size for size, _ in psnr})
    seeds_of = {size: sorted(seed for dim, seed in psnr if dim == size) for size in sizes}
    complete = sorted(set.intersection(*(set(seeds) for seeds in seeds_of.values())))
    with_fd = all(key in fd for key in psnr)

    def stacked(seeds_of_size: dict[int, list[int]]) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray] | None]:
        per_image = {size: np.stack([psnr[(size, seed)] for seed in seeds]) for size, seeds in seeds_of_size.items()}
        per_model = ({size: np.array([fd[(size, seed)] for seed in seeds]) for size, seeds in seeds_of_size.items()}
                     if with_fd else None)
        return per_image, per_model

    per_seed = selected_per_seed(*stacked({size: complete for size in sizes}), rule) if complete else []
    probabilities = selection_probabilities(*stacked(seeds_of), rule, replicates=replicates)
    seed_means = {size: {seed: float(psnr[(size, seed)].mean()) for seed in seeds_of[size]} for size in sizes}
    paired, across_seeds = None, None
    larger = [size for size in sizes if size > selected]
    if larger:
        paired_seeds = [seed for seed in seeds_of[selected] if seed in seeds_of[larger[0]]]
        if paired_seeds:
            paired = paired_comparison(selected, larger[0], np.stack([psnr[(selected, s)] for s in paired_seeds]),
                                       np.stack([psnr[(larger[0], s)] for s in paired_seeds]))
        if len(seeds_of[selected]) > 1 and len(seeds_of[larger[0]]) > 1:
            across_seeds = seed_comparison(selected, larger[0], np.array(list(seed_means[selected].values())),
                                           np.array(list(seed_means[larger[0]].values())))
    return Evidence(selected, complete, per_seed, probabilities, replicates, seed_means, paired, across_seeds)

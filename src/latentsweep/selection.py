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

import functools
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


def overall_fd(combined_rows: Iterable[Mapping[str, Any]]) -> dict[int, float]:
    """{latent size: mean Fréchet distance of the prior samples} from seed-combined tidy rows."""
    return {row["latent_dim"]: row["mean"]
            for row in lookup(combined_rows, protocol="prior_samples", cls="all", metric="fd")}


# ----------------------------------------------------------------------------------------
# Is the grid's top saturated? The PSNR gained per added dimension falls as a VAE leaves the dimensions it does not
# need inactive (Dai and Wipf 2019): the top is saturated when the step from the next smaller tested size to it gained
# at most the rule's tolerance, so a larger size is not expected to raise the best PSNR, and with it the rule's
# threshold, by more. Active units at the top are shown beside it as evidence, not used: the variance test counts
# units that vary only slightly (a nearly collapsed model had 35 of 40 "active"; MNIST's quick study has 20 of 20).
@dataclass(frozen=True)
class Saturation:
    saturated: bool
    top: int
    below: int | None  # the next smaller tested size (None: the top is the only one)
    gain_db: float | None  # PSNR from `below` to `top`
    active_units: float | None  # at the top (None where not measured)

    def sentence(self, tolerance_db: float) -> str:
        """The evidence in words, every number from the rows."""
        if self.below is None:
            return f"Only one size, {self.top}, was tested: nothing says whether a larger one would do better."
        units = "" if self.active_units is None else f"; {self.active_units:.1f} of its {self.top} units are active"
        verdict = ("saturated" if self.saturated else "not saturated: a larger size could still raise the best PSNR "
                   "by more than the tolerance")
        return (f"The top of the grid, {self.top}, is {verdict}. From {self.below} to {self.top} the PSNR changed by "
                f"{self.gain_db:+.2f} dB (tolerance {tolerance_db:g} dB){units}.")


def saturation(psnr: Mapping[int, float], active_units: Mapping[int, float], tolerance_db: float) -> Saturation:
    """Whether the largest of the sizes in `psnr` ({size: mean PSNR}) is saturated (the rule above), with the
    evidence; `active_units` ({size: mean active units}) may lack sizes measured before it existed."""
    sizes = sorted(psnr)
    top = sizes[-1]
    below = sizes[-2] if len(sizes) > 1 else None
    gain = psnr[top] - psnr[below] if below is not None else None
    return Saturation(gain is not None and gain <= tolerance_db, top, below, gain, active_units.get(top))


def overall_active_units(combined_rows: Iterable[Mapping[str, Any]]) -> dict[int, float]:
    """{latent size: mean active units} from seed-combined tidy rows."""
    return {row["latent_dim"]: row["mean"]
            for row in lookup(combined_rows, protocol="test_set", cls="all", metric="active_units")}


# ----------------------------------------------------------------------------------------
# FONDUE's signal beside the rule (Bonheme and Grzes 2022, arXiv 2209.12806). A unit the model does not use is
# passive: its posterior is the prior, so its mean is constant and its sampled value pure noise. The posterior means'
# intrinsic dimension (TwoNN) then stays put while the sampled codes' grows, and FONDUE takes the number of latent
# dimensions after which the two diverge. FONDUE searches with briefly trained models by doubling and bisection; here
# the criterion is applied to the study's fully trained models at the sizes it tested. The divergence counts as begun
# where the sampled codes span more than FONDUE_DIVERGENCE_DIMS more dimensions than the means: one passive unit's worth
# (a passive unit adds about one dimension of noise to the sampled codes and none to the means).
FONDUE_DIVERGENCE_DIMS = 1.0


@dataclass(frozen=True)
class FondueChoice:
    size: int | None  # the largest tested size before the divergence begins (None: it begins at the smallest)
    diverges_at: int | None  # the smallest tested size where it has begun (None: nowhere, so `size` is the top)
    gaps: dict[int, float]  # {tested size: sampled codes' dimension - posterior means'}

    def sentence(self, answer: int) -> str:
        """FONDUE's choice in words beside the rule's `answer`, every number from the gaps."""
        shown = ", ".join(f"{size}: {gap:+.1f}" for size, gap in sorted(self.gaps.items()))
        signal = (f"FONDUE's signal of passive units, the sampled codes' intrinsic dimension minus the posterior means' "
                  f"(TwoNN; diverged above {FONDUE_DIVERGENCE_DIMS:g}), by tested size: {shown}. ")
        if self.size is None:
            return signal + (f"It has diverged already at the smallest tested size, {self.diverges_at}: FONDUE's criterion "
                             f"would choose a smaller size than any tested, against the rule's {answer}.")
        if self.diverges_at is None:
            return signal + (f"It diverges at no tested size: FONDUE's criterion would choose at least the top, "
                             f"{self.size}, against the rule's {answer}.")
        return signal + (f"It diverges first at {self.diverges_at}, so FONDUE's criterion would choose {self.size}, "
                         f"against the rule's {answer}.")


def fondue_choice(code_dimension: Mapping[int, float], sampled_code_dimension: Mapping[int, float]) -> FondueChoice | None:
    """FONDUE's criterion (above) on {latent size: TwoNN of posterior means} and {latent size: TwoNN of sampled codes};
    None where no size has both (studies evaluated before the sampled codes were)."""
    gaps = {size: sampled_code_dimension[size] - code_dimension[size] for size in sorted(code_dimension)
            if size in sampled_code_dimension}
    if not gaps:
        return None
    sizes = sorted(gaps)
    diverged = [size for size in sizes if not gaps[size] <= FONDUE_DIVERGENCE_DIMS]  # NaN (codes without spread) too
    if not diverged:
        return FondueChoice(sizes[-1], None, gaps)
    before = [size for size in sizes if size < diverged[0]]
    return FondueChoice(before[-1] if before else None, diverged[0], gaps)


def overall_code_dimensions(combined_rows: Iterable[Mapping[str, Any]]) -> tuple[dict[int, float], dict[int, float]]:
    """({latent size: TwoNN of the posterior means}, {latent size: TwoNN of sampled codes}) from seed-combined rows."""
    return tuple({row["latent_dim"]: row["mean"] for row in lookup(combined_rows, protocol="test_set", cls="all", metric=name)}
                 for name in ("code_dimension", "sampled_code_dimension"))


def easiest_and_hardest(combined_rows: Iterable[Mapping[str, Any]], latent_dim: int) -> tuple[str, str]:
    """Classes with the highest and the lowest test-set mean PSNR at `latent_dim`."""
    per_class = {row["class"]: row["mean"] for row in lookup(combined_rows, protocol="test_set", metric="psnr", latent_dim=latent_dim)
                 if row["class"] != "all"}
    ranked = sorted(per_class, key=lambda name: per_class[name])
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


# ----------------------------------------------------------------------------------------
# Refinement: the answer to one dimension
#
# The grid (the study's --latent-dims) fixes the rule's reference, the best size's PSNR and the lowest
# Fréchet distance, and its answer. Sizes tested beyond the grid (probes, between the answer and the
# largest grid size below it that fails) are judged against that frozen reference by the same test
# that chose the grid's answer. The answer is the smallest tested size that passes while every larger
# tested size up to the grid's answer passes too; a passing size below a failing one is named.
#
# Where the probes go: each round k-sections the sizes still open (count 1: bisection), unless the curve
# through the tested sizes predicts where the answer lies, and probing the sizes on either side of that
# prediction cannot add a round to the k-section's worst case; then the round probes those (a hit settles
# the answer in one round). The prediction only places probes: every answer is a tested size's verdict.


@dataclass(frozen=True)
class Refined:
    selected: int
    grid_selected: int  # the answer on the grid sizes alone
    below: int  # the largest tested size under the answer that fails, or the grid size under it, or 0
    out_of_order: tuple[int, ...]  # tested sizes under `below` (and above the grid size under it) that pass


def refine_answer(passes: Mapping[int, bool], grid_selected: int, grid_below: int) -> Refined:
    """Walk down from the grid's answer over the tested sizes in (grid_below, grid_selected) while they pass.

    `passes` holds every tested size's verdict against the grid's frozen reference; `grid_below` is the
    largest grid size under the grid's answer (all of which fail), or 0 when the smallest grid size passed."""
    inside = sorted((size for size in passes if grid_below < size < grid_selected), reverse=True)
    selected, below = grid_selected, grid_below
    for size in inside:
        if not passes[size]:
            below = size
            break
        selected = size
    out_of_order = tuple(sorted(size for size in inside if size < below and passes[size]))
    return Refined(selected, grid_selected, below, out_of_order)


@dataclass(frozen=True)
class Decision:
    """The rule applied to tested sizes against the grid's reference: what `decide` and the bootstrap share."""

    refined: Refined
    reconstruction: Selection  # the reconstruction rule on the grid: the best size, its PSNR, the threshold
    reconstruction_refined: Refined  # the reconstruction rule alone, refined the same way
    combined: CombinedSelection | None  # None where the combined rule does not apply (no FD for every grid size)
    grid: tuple[int, ...]  # the grid's sizes that have results: they fix the reference
    fd_ceiling: float | None = None  # the generation test's highest passing FD, where the combined rule decides

    @property
    def selected(self) -> int:
        return self.refined.selected

    def passes(self, psnr: float, fd: float | None = None) -> bool:
        """The test that decides, on one size's mean PSNR (and mean FD where the combined rule decides)."""
        return psnr >= self.reconstruction.threshold_db and (self.fd_ceiling is None or fd <= self.fd_ceiling)


def apply_rule(psnr: Mapping[int, float], fd: Mapping[int, float] | None, tolerance_db: float, fd_tolerance: float,
               grid_sizes: Sequence[int] | None = None) -> Decision:
    """The study's rule on {size: mean PSNR} and {size: mean FD} (or None) of every tested size; the grid's
    sizes (default: all) fix the reference and the answer that probes refine."""
    grid = sorted(size for size in (grid_sizes if grid_sizes is not None else psnr) if size in psnr)
    grid_psnr = {size: psnr[size] for size in grid}
    grid_fd = {size: fd[size] for size in grid if size in fd} if fd else {}
    reconstruction = select_latent_dim(grid_psnr, tolerance_db)
    threshold = reconstruction.threshold_db

    def refined(grid_selected: int, test) -> Refined:
        below = max((size for size in grid if size < grid_selected), default=0)
        return refine_answer({size: test(size) for size in psnr}, grid_selected, below)

    def psnr_passes(size: int) -> bool:
        return psnr[size] >= threshold

    reconstruction_refined = refined(reconstruction.selected, psnr_passes)
    chosen = None
    if combined_rule_applies(grid_psnr, grid_fd) and all(size in fd for size in psnr):
        chosen = select_combined(grid_psnr, grid_fd, tolerance_db, fd_tolerance)
    if chosen is None or chosen.fell_back:
        return Decision(reconstruction_refined, reconstruction, reconstruction_refined, chosen, tuple(grid))
    fd_ceiling = grid_fd[chosen.best_fd_size] * (1 + fd_tolerance)
    both = refined(chosen.selected, lambda size: psnr_passes(size) and fd[size] <= fd_ceiling)
    return Decision(both, reconstruction, reconstruction_refined, chosen, tuple(grid), fd_ceiling)


def predicted_answer(psnr: Mapping[int, float], fd: Mapping[int, float] | None, decision: Decision) -> int | None:
    """The smallest size between the refined interval's ends that passes the deciding test on the monotone
    cubic (PCHIP, shape-preserving: no overshoot between points) through every tested size's mean PSNR
    (and mean FD where the combined rule decides); the answer when none does. None where the interval has
    no tested lower end (the smallest grid size passed): nothing to interpolate from."""
    from scipy.interpolate import PchipInterpolator

    refined = decision.refined
    if refined.below == 0 or refined.selected - refined.below < 2:
        return None
    sizes = sorted(psnr)
    curve = PchipInterpolator(sizes, [psnr[size] for size in sizes])
    fd_curve = (PchipInterpolator(sizes, [fd[size] for size in sizes])
                if decision.fd_ceiling is not None else None)
    for size in range(refined.below + 1, refined.selected):
        if decision.passes(float(curve(size)), fd_curve and float(fd_curve(size))):
            return size
    return refined.selected


def probe_sizes(refined: Refined, attempted: Iterable[int], count: int, predicted: int | None = None) -> list[int]:
    """Up to `count` untried sizes between `refined.below` and the answer; none once the answer is known to
    one dimension, or when every size between was tried (a size whose every trial failed is not tried again).

    With a `predicted` answer (predicted_answer), the `count` untried sizes around it (its neighbour below
    and itself, for two), where that cannot add a round to the worst case; else the sizes that split the
    possible answers into count + 1 near-equal runs (count 1: bisection)."""
    attempted = set(attempted)
    candidates = [size for size in range(refined.below + 1, refined.selected) if size not in attempted]
    count = min(count, len(candidates))
    if count == 0:
        return []
    if predicted is not None:
        # the first untried size at or above the prediction; its index among the candidates (or past them)
        index = next((i for i, size in enumerate(candidates) if size >= predicted), len(candidates))
        start = min(max(index - -(-count // 2), 0), len(candidates) - count)
        if _window_is_safe(len(candidates), start, count):
            return candidates[start:start + count]
    outcomes = [*candidates, refined.selected]  # the answer is one of these
    return [run[-1] for run in _split(outcomes, count + 1)[:-1]]


def _window_is_safe(candidates: int, start: int, count: int) -> bool:
    """Probing `count` neighbouring sizes from position `start` leaves, at worst, the longer side open; safe
    when that side needs no more rounds than the k-section's worst case has left after its first."""
    longest_left = max(start, candidates - start - count)
    return 1 + _ksection_rounds(longest_left, count) <= _ksection_rounds(candidates, count)


def _split(items: list[int], parts: int) -> list[list[int]]:
    """`items` in `parts` consecutive runs whose lengths differ by at most one, the longer first."""
    size, extra = divmod(len(items), parts)
    runs, start = [], 0
    for index in range(parts):
        end = start + size + (index < extra)
        runs.append(items[start:end])
        start = end
    return runs


def _ksection_left(candidates: int, probed: int) -> int:
    """Untried sizes in the longest run that `probed` k-section probes leave of `candidates`."""
    return -(-(candidates + 1) // (probed + 1)) - 1


def _ksection_rounds(candidates: int, count: int) -> int:
    """Rounds of k-section (count probes a round) needed in the worst case to settle `candidates` untried sizes."""
    rounds = 0
    while candidates > 0:
        rounds += 1
        candidates = _ksection_left(candidates, min(count, candidates))
    return rounds


@functools.lru_cache(maxsize=None)
def worst_case_probes(candidates: int, count: int) -> tuple[int, ...]:
    """The probe sizes of each round of `probe_sizes(..., count)` in the worst case: whichever placement each
    round makes (k-section, or any safe window around a prediction), the answer lands in the longest run
    left, and the rounds' sizes add up to the most."""
    if candidates <= 0:
        return ()
    probed = min(count, candidates)
    left = [_ksection_left(candidates, probed)]
    left += [max(start, candidates - start - probed) for start in range(candidates - probed + 1)
             if _window_is_safe(candidates, start, probed)]
    return (probed,) + max((worst_case_probes(n, count) for n in set(left)), key=lambda rest: (sum(rest), len(rest)))


def widest_gap(grid_sizes: Iterable[int]) -> int:
    """The most untried sizes between two neighbouring grid sizes (or under the smallest): the refinement's worst case."""
    sizes = sorted(grid_sizes)
    return max(upper - lower - 1 for lower, upper in zip([0, *sizes], sizes))


def decide(combined: Sequence[Mapping[str, Any]], tolerance_db: float, fd_tolerance: float,
           class_names: Sequence[str], noun: str = "digit", grid_sizes: Sequence[int] | None = None,
           untestable: Iterable[int] = ()) -> Answer:
    """The study's answer for one variant's seed-combined rows, and every sentence that states it.

    The combined rule decides where every size has a Fréchet distance of its prior samples, else the
    reconstruction rule alone (combined_rule_applies); `grid_sizes` (default: every size in the rows) fix
    its reference, and the other sizes refine the grid's answer (apply_rule). `untestable`: probe sizes
    whose every trial failed. This is the only place the answer is decided: the report, the explorer,
    the command line's summary, export and load_study all read it from here (results.read_results)."""
    psnr = overall_psnr(combined)
    fd = overall_fd(combined)
    decision = apply_rule(psnr, fd, tolerance_db, fd_tolerance, grid_sizes)
    grid = decision.grid
    reconstruction, chosen = decision.reconstruction, decision.combined
    combined_decides = chosen is not None and not chosen.fell_back
    rule_sentences: list[str] = []
    if chosen is not None:
        rule_sentences = [
            f"Combined selection (reconstruction and generation): latent size {decision.selected}. Rule: "
            f"{combined_rule_text(tolerance_db, fd_tolerance)}.",
            f"Grid sizes passing the reconstruction test: {', '.join(map(str, chosen.passes_reconstruction))}; passing "
            f"the generation test: {', '.join(map(str, chosen.passes_generation))} (lowest Fréchet distance "
            f"{fd[chosen.best_fd_size]:.2f} at size {chosen.best_fd_size})."
            + (" No size passes both, so the reconstruction rule decides." if chosen.fell_back else ""),
        ]
    selected = decision.selected
    label = "Reconstruction rule alone, latent size" if chosen else "Selected latent size"
    sentences = _answer_sentences(combined, psnr, fd if combined_decides else {}, reconstruction,
                                  decision.reconstruction_refined.selected, selected, tolerance_db, fd_tolerance,
                                  class_names, noun, label)
    probes = tuple(size for size in sorted(psnr) if size not in grid)
    untestable = tuple(sorted(set(untestable) - set(psnr)))
    resolution = _resolution_sentence(decision.refined, psnr, fd if combined_decides else {}, reconstruction,
                                      fd_tolerance, probes, untestable, noun)
    headline = (rule_sentences[:1] + sentences[1:2]) if chosen else sentences[:2]
    return Answer(selected, "combined" if combined_decides else "reconstruction", reconstruction,
                  tuple(rule_sentences + sentences[:2] + [resolution] + sentences[2:]), tuple(headline + [resolution]),
                  decision.refined, grid, probes, untestable)


@dataclass(frozen=True)
class Answer:
    """One variant's answer: the size, the rule that decided it, and the sentences that say so."""

    selected: int
    rule: str  # "combined" (reconstruction and generation) or "reconstruction"
    reconstruction: Selection  # the reconstruction rule on the grid: the best size's PSNR and the threshold
    sentences: tuple[str, ...]  # the conclusion, every number from the rows
    headline: tuple[str, ...]  # its first lines: the answer, how far it is from the best, its resolution
    refined: Refined  # the grid's answer and the tested size under the answer that fails
    grid: tuple[int, ...] = ()  # the study's --latent-dims that have results
    probes: tuple[int, ...] = ()  # the other tested sizes, tried to refine the answer
    untestable: tuple[int, ...] = ()  # probe sizes whose every trial failed

    @property
    def below(self) -> int:
        return self.refined.below

    @property
    def exact(self) -> bool:
        """The answer is known to one dimension: the size under it fails (or it is 1)."""
        return self.selected - self.below == 1


def _resolution_sentence(refined: Refined, psnr: Mapping[int, float], fd: Mapping[int, float],
                         reconstruction: Selection, fd_tolerance: float, probes: Sequence[int],
                         untestable: Sequence[int], noun: str) -> str:
    """How precisely the answer is known, e.g. "13 is exact to one dimension: 12 fails by 0.20 dB, 13 passes"."""
    selected, below = refined.selected, refined.below
    threshold = reconstruction.threshold_db
    if below == 0:
        why_below = "no smaller size exists" if selected == 1 else "no smaller size was tested"
    elif psnr[below] < threshold:
        why_below = f"{below} fails by {threshold - psnr[below]:.2f} dB (threshold {threshold:.2f} dB)"
    else:
        lowest = min(fd.values())
        why_below = (f"{below} is within the PSNR tolerance but its Fréchet distance, {fd[below]:.2f}, is more than "
                     f"{100 * fd_tolerance:g}% above the lowest ({lowest:.2f})")
    passes = f"{selected} passes ({psnr[selected] - threshold:+.2f} dB against the threshold)"
    tested = (f" Sizes tried beyond the grid to refine it: {', '.join(map(str, probes))}." if probes else "")
    if selected - below == 1:
        text = f"Resolution: {selected} is exact to one dimension: {why_below}; {passes}."
    else:
        gap = f"{below + 1}..{selected - 1}"
        reason = (f"sizes {', '.join(map(str, untestable))} could not be trained (every trial failed)" if untestable
                  else "those sizes were not tested (run with --refine to test them)")
        text = f"Resolution: the smallest adequate size lies in {gap} or is {selected}: {why_below}; {passes}; {reason}."
    if refined.out_of_order:
        text += (f" Not monotone: tested size(s) {', '.join(map(str, refined.out_of_order))} pass although {below}, "
                 "larger, fails; the answer keeps to the sizes from which every larger tested size passes.")
    return text + tested


def _answer_sentences(combined: Sequence[Mapping[str, Any]], psnr: Mapping[int, float], fd: Mapping[int, float],
                      reconstruction: Selection, reconstruction_selected: int, selected: int, tolerance_db: float,
                      fd_tolerance: float, class_names: Sequence[str], noun: str, label: str) -> list[str]:
    """The reconstruction rule's pick, then the answer (`selected`) against the best size, the next smaller
    size and why it fails, the easiest and hardest class at the answer, and the gains between sizes."""
    best, best_psnr, threshold = reconstruction.best, reconstruction.best_psnr, reconstruction.threshold_db

    def class_psnr(name: str) -> float:
        return lookup(combined, protocol="test_set", metric="psnr", latent_dim=selected, cls=name)[0]["mean"]

    sizes = sorted(psnr)
    sentences = [
        f"{label}: {reconstruction_selected}. Rule: {rule_text(tolerance_db)}.",
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
    if class_names:  # unlabelled images have no classes to rank
        easiest, hardest = easiest_and_hardest(combined, selected)
        sentences.append(
            f"At latent size {selected} the easiest {noun} is {easiest} "
            f"({class_psnr(easiest):.2f} dB) and the hardest is {hardest} ({class_psnr(hardest):.2f} dB).")
    gains = [f"{a}->{b}: {psnr[b] - psnr[a]:+.2f} dB" for a, b in zip(sizes, sizes[1:])]
    if gains:
        sentences.append("PSNR change between consecutive sizes: " + ", ".join(gains) + ".")
    return sentences

"""Does flushing denormals to zero speed up training here? Measured in fresh processes.

    python benchmarks/bench_denormals.py --data-dir ../shared/datasets/mnist

torch.set_flush_denormal sets the calling thread's floating-point mode only. Threads inherit it when
they are created, so it reaches torch's OpenMP workers only if it is set before the first parallel
operation; set later in a running process (as an in-process A/B test would), half of a 2-thread
elementwise result is still computed with denormals. So each configuration runs in a process of its
own that sets the mode first thing, and the processes alternate (--repeats) because this shared host
drifts. Denormals also take time to appear: Adam's moment estimates of weights whose gradient stays
exactly zero (dead ReLU units) decay by 0.9 and 0.999 per step into the denormal range only after a
few hundred steps, so each process trains the default model for --epochs passes over the training
set and reports the later epochs, with how many Adam state entries were denormal at the end.

Seen here (2-core AMD EPYC, torch 2.13.0): see the README's Speed section.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys


def train_and_report(data_dir: str | None, epochs: int, flush: bool) -> None:
    """The child process: set the mode before torch starts any thread, train, print one JSON line."""
    import time

    import torch

    torch.set_flush_denormal(flush)
    from latentsweep.data import DATASETS, load_dataset, resolve_data_dir
    from latentsweep.kernels import use_fast_cpu_kernels
    from latentsweep.model import ConvVAE, VAEConfig
    from latentsweep.train import epoch_permutation, train_epoch

    spec = DATASETS["mnist"]
    images = load_dataset(spec, resolve_data_dir(spec, data_dir), val_size=5000).train.images
    torch.manual_seed(0)
    model = use_fast_cpu_kernels(ConvVAE(VAEConfig(latent_dim=20)))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    seconds, losses = [], []
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        terms = train_epoch(model, optimizer, images, epoch_permutation(len(images), 0, epoch), 128, 1.0, generator)
        seconds.append(time.perf_counter() - started)
        losses.append(terms["loss"])
    tiny = torch.finfo(torch.float32).tiny
    moments = [state for states in optimizer.state.values() for name, state in states.items() if name != "step"]
    denormal = sum(int(((state != 0) & (state.abs() < tiny)).sum()) for state in moments)
    print(json.dumps({"images": len(images), "seconds": seconds, "losses": losses, "denormal_state": denormal,
                      "state_entries": sum(state.numel() for state in moments)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir")
    parser.add_argument("--epochs", type=int, default=3, help="passes over the 55,000 training images (default 3)")
    parser.add_argument("--repeats", type=int, default=2, help="processes per configuration, alternating (default 2)")
    parser.add_argument("--child", choices=("flush", "keep"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs: at least 2 (the first epoch has no denormals yet)")
    if args.child:
        train_and_report(args.data_dir, args.epochs, flush=args.child == "flush")
        return

    results: dict[str, list[dict]] = {"keep": [], "flush": []}
    for _ in range(args.repeats):
        for mode in results:
            command = [sys.executable, __file__, "--child", mode, "--epochs", str(args.epochs)]
            if args.data_dir:
                command += ["--data-dir", args.data_dir]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results[mode].append(json.loads(output.splitlines()[-1]))
    print(f"default model, latent 20, batch 128, {args.epochs} epochs per process, {args.repeats} processes each; "
          f"rates over epochs 2-{args.epochs}")
    rates = {}
    for mode, runs in results.items():
        per_run = [run["images"] * (args.epochs - 1) / sum(run["seconds"][1:]) for run in runs]
        rates[mode] = statistics.median(per_run)
        label = "denormals flushed (FTZ/DAZ)" if mode == "flush" else "denormals kept (default)"
        print(f"{label:<28} {rates[mode]:>7,.0f} img/s  (runs {', '.join(f'{r:,.0f}' for r in per_run)}; "
              f"denormal Adam state entries at the end: {runs[0]['denormal_state']:,} of {runs[0]['state_entries']:,}; "
              f"final loss {runs[0]['losses'][-1]:.4f})")
    print(f"flushed / kept: x{rates['flush'] / rates['keep']:.2f}")


if __name__ == "__main__":
    main()

"""latentsweep: how small can a VAE's latent space be before reconstructions and samples degrade?"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("latentsweep")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "load_study", "run_study"]


def __getattr__(name: str):
    """`latentsweep.run_study` and `latentsweep.load_study` (study.py), imported when first used so that
    `import latentsweep` stays light."""
    if name in ("run_study", "load_study"):
        from latentsweep import study

        return getattr(study, name)
    raise AttributeError(f"module 'latentsweep' has no attribute {name!r}")

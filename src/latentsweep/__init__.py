"""latentsweep: how small can a VAE's latent space be before reconstructions and samples degrade?"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("latentsweep")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

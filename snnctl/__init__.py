"""snnctl: a command-line toolchain for spiking neural networks."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("snnctl")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]

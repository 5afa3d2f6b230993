"""Residency Bridge: a data-residency gateway between on-prem agents and cloud compute."""

from importlib.metadata import PackageNotFoundError, version

try:
    # The installed distribution's version: a package built as 0.1.1 says 0.1.1.
    __version__ = version("residency-bridge")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

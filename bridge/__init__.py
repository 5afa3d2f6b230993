"""Residency Bridge: a data-residency gateway between on-prem agents and cloud compute."""

__version__ = "0.1.0"

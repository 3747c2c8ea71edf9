"""Exceptions raised for bad input anywhere in mixpim.

Every error names the offending value; the CLI prints ``str(error)`` on one line.
"""

__all__ = ["MixpimError", "ConfigError", "ShapeError", "RangeError"]


class MixpimError(Exception):
    """Base class of every error mixpim raises on purpose."""


class ConfigError(MixpimError, ValueError):
    """A hardware configuration value is out of range or inconsistent."""


class ShapeError(MixpimError, ValueError):
    """Operand shapes do not match (e.g. GEMM K dimensions differ)."""


class RangeError(MixpimError, ValueError):
    """A value does not fit the width the hardware gives it (e.g. a weight code or an accumulator)."""

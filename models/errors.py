"""Exceptions raised for bad input anywhere in mixpim.

Every error names the offending value; the CLI prints ``str(error)`` on one line.
"""

import sys

__all__ = ["MixpimError", "ConfigError", "ShapeError", "RangeError", "parse_problem"]


class MixpimError(Exception):
    """Base class of every error mixpim raises on purpose."""


class ConfigError(MixpimError, ValueError):
    """A hardware configuration value is out of range or inconsistent."""


class ShapeError(MixpimError, ValueError):
    """Operand shapes do not match (e.g. GEMM K dimensions differ)."""


class RangeError(MixpimError, ValueError):
    """A value does not fit the width the hardware gives it (e.g. a weight code or an accumulator)."""



def parse_problem(error):
    """One line saying why a JSON or TOML parser failed with ``error``: nesting too deep for the
    recursion limit (``RecursionError``), an integer too long for Python to convert (a
    ``ValueError``), or the parser's own message."""
    if isinstance(error, RecursionError):
        return "values are nested too deeply"
    text = str(error)
    if "integer string conversion" in text:
        return f"an integer has more than {sys.get_int_max_str_digits()} digits"
    return text

"""Helpers shared by the test modules."""

import re
import traceback

import pytest
from amaranth.hdl import Elaboratable

__all__ = ["exact", "rejects"]


def exact(text):
    """A ``match=`` pattern for exactly ``text``."""
    return "^" + re.escape(text) + "$"


def rejects(exc, msg, make):
    """``make()`` raises ``exc`` with exactly ``msg``; the half-built component is silenced, so
    Amaranth does not report it as an unused elaboratable."""
    with pytest.raises(exc, match=exact(msg)) as info:
        make()
    for frame, _ in traceback.walk_tb(info.tb):
        obj = frame.f_locals.get("self")
        if isinstance(obj, Elaboratable):
            obj._MustUse__silence = True

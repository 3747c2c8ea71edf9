"""Verilog generation from Amaranth components, with content hashes for caching.

Verilog is generated with ``emit_src=False``: no absolute source paths end up in the text, so the
same design gives byte-identical Verilog on every machine and the hash is a stable cache key.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from amaranth.back import verilog

__all__ = ["to_verilog", "content_hash", "write_verilog"]


def to_verilog(component, name: str) -> str:
    """Verilog text of *component* with top-level module *name*.

    Ports are flattened with ``__`` (``o_stream__payload``); ``clk`` and ``rst`` are added when the
    design has a ``sync`` domain.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"Module name must be a Verilog identifier, not {name!r}")
    return verilog.convert(component, name=name, emit_src=False)


def content_hash(text: str) -> str:
    """The first 16 hex digits of the SHA-256 of *text* (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def write_verilog(component, name: str, out_dir) -> Path:
    """Write ``<out_dir>/<name>.v`` and return its path (the directory is created if needed)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.v"
    path.write_text(to_verilog(component, name))
    return path

"""``mixpim rtl tile`` and ``mixpim synth tile``: TileTop's Verilog, register documentation and
manifest, and its synthesis.

The files of :func:`tile_rtl_files` are ``<top>.v`` (:class:`~mixpim.hw.tile_csr.TileTop`),
``registers.md`` and ``tile_regs.h`` (:mod:`.regmap_doc`), the example ULX3S board files of
:mod:`.board` (a top level around ``<top>``, its pins, a build script) and ``manifest.json``: the
configuration, the content hash of every file, every port with its direction and width (as named
in the Verilog), the register map's size and the tool versions.
"""

import json
import platform
from importlib import metadata

from amaranth.hdl import Value

from ..hw.tile import MAX_IMEM_WORDS
from ..hw.tile_csr import TileTop
from ..models.config import TileConfig
from ..models.errors import ConfigError
from ..models.tile_array import array_params
from ..models.regmap import VERSION, regmap
from .board import BOARD_FILES, board_files
from .regmap_doc import c_header, markdown
from .verilog import content_hash, to_verilog

__all__ = ["tiletop_name", "tile_rtl_files", "write_tile_rtl", "TILE_FILES"]

#: Files ``mixpim rtl tile`` writes besides ``<top>.v``.
TILE_FILES = ("registers.md", "tile_regs.h", *BOARD_FILES, "manifest.json")


def _check(config, imem_words):
    if not isinstance(config, TileConfig):
        raise ConfigError(f"config must be a TileConfig, not {type(config).__name__}")
    if isinstance(imem_words, bool) or not isinstance(imem_words, int) \
            or not 1 <= imem_words <= MAX_IMEM_WORDS:
        raise ConfigError(f"imem_words must be an integer in 1..{MAX_IMEM_WORDS}, not {imem_words!r}")


def tiletop_name(config, imem_words):
    """Verilog module name of the TileTop of ``config``."""
    from .tile_cosim import tile_top
    return "tiletop" + tile_top(config, imem_words)[len("tile"):]


def _version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _ports(top):
    ports = [{"name": "clk", "direction": "input", "width": 1},
             {"name": "rst", "direction": "input", "width": 1}]
    for path, member, value in top.signature.flatten(top):
        ports.append({"name": "__".join(str(p) for p in path),
                      "direction": "input" if member.flow.name == "In" else "output",
                      "width": len(Value.cast(value))})
    return ports


def tile_rtl_files(config, imem_words=1024, config_name=None):
    """``{file name: text}`` of the TileTop of ``config`` (nothing written); ``config_name`` names
    the configuration in the documents (default ``custom``)."""
    _check(config, imem_words)
    name = config_name or "custom"
    top = tiletop_name(config, imem_words)
    from .designs import LINT_WAIVER
    component = TileTop(config, imem_words)
    rm = regmap(config, imem_words)
    files = {f"{top}.v": LINT_WAIVER + to_verilog(component, top),
             "registers.md": markdown(rm, name) + "\n", "tile_regs.h": c_header(rm, name),
             **board_files(config, top, imem_words)}
    manifest = {
        "design": "tile", "top": top, "verilog": f"{top}.v", "config_name": name,
        "config": config.to_dict(), "imem_words": imem_words,
        "array_latency": array_params(config).latency,
        "register_map": {"version": f"{VERSION[0]}.{VERSION[1]}", "bus": "wishbone-b4-classic",
                         "data_bits": 32, "addr_bits": rm.addr_bits, "size_bytes": rm.size,
                         "config_id": rm["CONFIG_ID"].value},
        "hashes": {f: content_hash(text) for f, text in files.items()},
        "ports": _ports(component),
        "forwarded_tile_ports": list(component.forwarded),
        "tools": {"python": platform.python_version(), "amaranth": _version("amaranth"),
                  "mixpim": _version("mixpim")},
    }
    files["manifest.json"] = json.dumps(manifest, indent=2) + "\n"
    return files


def write_tile_rtl(config, out_dir, *, imem_words=1024, config_name=None, say=None):
    """Write :func:`tile_rtl_files` into ``out_dir`` as one atomic batch
    (:func:`mixpim.sim.outputs.write_files`: on failure nothing in ``out_dir`` is replaced);
    returns the paths by file name."""
    from .outputs import check_outputs, write_files
    _check(config, imem_words)
    top = tiletop_name(config, imem_words)
    check_outputs(out_dir, (f"{top}.v", *TILE_FILES))  # before the elaboration
    return write_files(out_dir, tile_rtl_files(config, imem_words, config_name), say=say)

"""DRAM placement: :class:`DramAllocator`, the bump allocator that gives every tensor of a
program its DRAM region (each region starting on its own channel and bank, docs/compiler.md,
"Place")."""

import math

from .emit import CompileError

__all__ = ["DramAllocator", "DramFull"]


class DramFull(CompileError):
    """A program's regions (or KV caches) do not fit the DRAM."""


class DramAllocator:
    """Bump allocator over DRAM: region r starts at the beginning of global DRAM row ``g`` with
    ``g % (channels * banks) == r % (channels * banks)`` (rounded up to the region's word size),
    so streams of different tensors that the DMA interleaves start in different banks; every
    region itself spans consecutive rows, which rotate over all channels and banks. ``symbols``:
    ``{name: DRAM byte address}`` of every region.

    ``key`` (a function of the region's name) makes regions of equal keys share a residue: region
    r's is then the index of its key among the keys met so far instead of r. Timing-only programs
    (:mod:`.llama_shapes`) key a block's constants by their names without the ``l{i}.`` prefix,
    so every block's constants sit in the same channels and banks (and, whatever their word size,
    at the start of a row) and identical blocks time identically."""

    def __init__(self, config, key=None):
        self.cfg = config
        self.top = 0
        self.count = 0
        self.symbols = {}
        self.key = key
        self._residues = {}

    def alloc(self, name, nbytes, word_bytes):
        """The DRAM byte address of a new region ``name`` of ``nbytes`` bytes, aligned to
        ``word_bytes``. Raises :class:`CompileError` when DRAM is too small."""
        cfg = self.cfg
        rb, banks = cfg.dram_row_bytes, cfg.dram_channels * cfg.dram_banks
        residue = self.count
        if self.key is not None:
            residue = self._residues.setdefault(self.key(name), len(self._residues))
        row = -(-self.top // rb)
        row += (residue - row) % banks  # row % banks == residue % banks
        if self.key is not None:  # a row whose start is a word boundary: equal keys, equal columns
            q = word_bytes // math.gcd(word_bytes, rb)
            for _ in range(q):
                if row % q == 0:
                    break
                row += banks
        base = row * rb
        base += -base % word_bytes
        end = base + nbytes
        if end > cfg.dram_bytes:
            raise DramFull(f"DRAM ({cfg.dram_bytes} bytes) is too small: {name} needs "
                           f"{nbytes} bytes at 0x{base:x}")
        self.top = end
        self.count += 1
        self.symbols[name] = base
        return base

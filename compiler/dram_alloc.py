"""DRAM placement: :class:`DramAllocator`, the bump allocator that gives every tensor of a
program its DRAM region (each region starting on its own channel and bank, docs/compiler.md,
"Place")."""

from .emit import CompileError

__all__ = ["DramAllocator"]


class DramAllocator:
    """Bump allocator over DRAM: region r starts at the beginning of global DRAM row ``g`` with
    ``g % (channels * banks) == r % (channels * banks)`` (rounded up to the region's word size),
    so streams of different tensors that the DMA interleaves start in different banks; every
    region itself spans consecutive rows, which rotate over all channels and banks. ``symbols``: ``{name: DRAM byte address}`` of every region."""

    def __init__(self, config):
        self.cfg = config
        self.top = 0
        self.count = 0
        self.symbols = {}

    def alloc(self, name, nbytes, word_bytes):
        """The DRAM byte address of a new region ``name`` of ``nbytes`` bytes, aligned to
        ``word_bytes``. Raises :class:`CompileError` when DRAM is too small."""
        cfg = self.cfg
        rb, banks = cfg.dram_row_bytes, cfg.dram_channels * cfg.dram_banks
        row = -(-self.top // rb)
        row += (self.count - row) % banks  # row % banks == count % banks
        base = row * rb
        base += -base % word_bytes
        end = base + nbytes
        if end > cfg.dram_bytes:
            raise CompileError(f"DRAM ({cfg.dram_bytes} bytes) is too small: {name} needs "
                               f"{nbytes} bytes at 0x{base:x}")
        self.top = end
        self.count += 1
        self.symbols[name] = base
        return base

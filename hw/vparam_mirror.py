"""The VEC lanes' copy of VPARAM words 0 .. 64 + rows - 1 (the GELU table and the token
multipliers), read through combinational lookups.

In every column slot each VEC lane looks up one token multiplier and one GELU table entry, in
the cycle it needs them; the scratchpad's ports (synchronous reads, one port per unit) cannot
serve that, so the tile keeps these words a second time, here, in memories an FPGA holds in LUT
RAM (one write port, asynchronous reads; on ECP5 ``TRELLIS_DPR16X4``, 16 words x 4 bits), the
way :mod:`.spad_memory` builds a scratchpad:

* **Banks.** Word ``a`` is in bank ``a % B`` at index ``a // B`` (``B`` the next power of two of
  the write port's lanes; it divides the table's 64 words). The lanes of one write are
  consecutive words, so each bank has one writer a cycle: the lane that lands there.
* **Copies.** Each bank keeps a copy of its table words and a copy of its token words per
  lookup lane (a LUT RAM has one read port): ``vec_lanes`` copies of the 64 table words (2048
  bits), ``vec_lanes`` of the ``rows`` token words (``32 * rows`` bits). A copy of one word is a
  register.

A lookup of a table entry reads its word's index in every bank and picks the entry's byte; a
lookup of a token multiplier reads the token's index in every bank and picks the token's bank.

Ports: one write port of the DMA's VPARAM lanes (32-bit words; the tile puts the host on it
while not running); per lookup lane an 8-bit table entry address in, its int8 entry out, and a
token address in, its 32-bit multiplier word out. Timing: the words written in cycle c are
visible to the lookups from cycle c + 1 (as with registers); a lookup's data follows its address
in the same cycle (combinational). On ``bench/fpga8_p4.toml`` (4 write lanes, 2 lookup lanes,
8 tokens) ECP5 maps it to 128 ``TRELLIS_DPR16X4`` and 632 LUT4; the 72 32-bit registers it
replaced cost 12,024 LUT4 of write logic in the tile and 3,798 of read multiplexers in VEC.
"""

from amaranth.hdl import Cat, Const, Module, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from ..models.config import VPARAM_LUT_WORDS
from ..models.units import Spad
from ..models.vector import LUT_ENTRIES
from .common import ConfigComponent
from .dma import SpadWriteSignature, port_lanes
from .vector_common import VPARAM_BITS, vparam_layout

__all__ = ["LUT_ENTRY_BITS", "VParamLookupSignature", "VParamMirror"]

#: A GELU table entry: int8, entry ``e`` is byte ``e % 4`` of VPARAM word ``e // 4``.
LUT_ENTRY_BITS = 8
_ENTRY_SEL_BITS = exact_log2(VPARAM_BITS // LUT_ENTRY_BITS)   # entry within a word
assert LUT_ENTRIES == VPARAM_LUT_WORDS * VPARAM_BITS // LUT_ENTRY_BITS


class VParamLookupSignature(wiring.Signature):
    """The VEC lanes' lookups, seen from the VEC unit: per lane ``i``, the data of the address
    driven in the same cycle (combinational).

    Arguments
    ---------
    rows : int, tokens
    lanes : int, lookup lanes (``vec_lanes``)

    Members
    -------
    lut_addr : Out(ArrayLayout(unsigned(8), lanes)), GELU table entries
    lut_data : In(ArrayLayout(signed(8), lanes)), entry ``e = lut_addr[i]``: byte ``e % 4`` of
        VPARAM word ``e // 4``
    tparam_addr : Out(ArrayLayout(range(rows), lanes)), tokens (below ``rows``)
    tparam_data : In(ArrayLayout(:func:`~.vector_common.vparam_layout`, lanes)), VPARAM word
        ``64 + tparam_addr[i]``
    """

    def __init__(self, rows, lanes):
        super().__init__({
            "lut_addr": Out(data.ArrayLayout(unsigned(exact_log2(LUT_ENTRIES)), lanes)),
            "lut_data": In(data.ArrayLayout(signed(LUT_ENTRY_BITS), lanes)),
            "tparam_addr": Out(data.ArrayLayout(range(rows), lanes)),
            "tparam_data": In(data.ArrayLayout(vparam_layout(), lanes)),
        })


class VParamMirror(ConfigComponent):
    """VPARAM words 0 .. 64 + rows - 1 for the ``vec_lanes`` lanes' lookups (module docstring).

    Arguments
    ---------
    config : TileConfig (else TypeError, :class:`~.common.ConfigComponent`)

    Members
    -------
    w : In(:class:`~.dma.SpadWriteSignature`) of 32-bit words and the DMA's VPARAM lanes
        (:func:`~.dma.port_lanes`), the VPARAM writes of a cycle: ``data[i]`` to word
        ``addr + i`` where ``en[i]`` (words from ``64 + rows`` on are not kept)
    lookup : In(:class:`VParamLookupSignature`) of ``rows`` tokens and ``vec_lanes`` lanes
    """

    def _members(self, config):
        return {
            "w": In(SpadWriteSignature(unsigned(VPARAM_BITS), port_lanes(config, Spad.VPARAM))),
            "lookup": In(VParamLookupSignature(config.rows, config.vec_lanes)),
        }

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        lanes = len(self.w.en)
        nb = 1 << ceil_log2(lanes)
        lb = exact_log2(nb)
        assert VPARAM_LUT_WORDS % nb == 0

        # per bank, the word written there this cycle (by the lane that lands there)
        banks = []   # (word address, enable, word)
        for b in range(nb):
            addr = Signal(len(self.w.addr) + 1, name=f"b{b}_addr")
            en = Signal(name=f"b{b}_en")
            word = Signal(VPARAM_BITS, name=f"b{b}_word")
            if lb:
                lane = Signal(lb, name=f"b{b}_lane")
                lane_en = self.w.en.bit_select(lane, 1)
                m.d.comb += [lane.eq(b - self.w.addr[:lb]),
                             en.eq(lane_en & (lane < lanes) if lanes < nb else lane_en)]
            else:
                lane = 0
                m.d.comb += en.eq(self.w.en[0])
            m.d.comb += [addr.eq(self.w.addr + lane),
                         word.eq(self.w.data.as_value().word_select(lane, VPARAM_BITS))]
            banks.append((addr, en, word))

        def region(name, base, count, raddrs):
            """Words ``base .. base + count - 1`` (``base % nb == 0``), a copy per read index of
            ``raddrs`` (a word offset from ``base`` each): per copy, the ``nb`` banks' words at
            its index (Const 0 for a bank without words)."""
            out = [[None] * nb for _ in raddrs]
            for b in range(nb):
                depth = len(range(b, count, nb))
                if not depth:
                    for r in range(len(raddrs)):
                        out[r][b] = Const(0, VPARAM_BITS)
                    continue
                addr, en, word = banks[b]
                wen = Signal(name=f"{name}_b{b}_wen")
                m.d.comb += wen.eq(en & (addr < base + count) & ((addr >= base) if base else 1))
                windex = (addr >> lb) - base // nb
                for r, raddr in enumerate(raddrs):
                    out[r][b] = self._copy(m, f"{name}_b{b}_l{r}", depth, windex, wen, word,
                                           raddr[lb:])
            return out

        look = self.lookup
        # table entry e: word e >> 2 (bank (e >> 2) % nb, index e >> (2 + lb)), byte e % 4
        lut_words = [look.lut_addr[i][_ENTRY_SEL_BITS:] for i in range(cfg.vec_lanes)]
        for i, bank_words in enumerate(region("lut", 0, VPARAM_LUT_WORDS, lut_words)):
            e = look.lut_addr[i]
            m.d.comb += look.lut_data[i].eq(
                Cat(*bank_words).word_select(e[:_ENTRY_SEL_BITS + lb], LUT_ENTRY_BITS))
        tokens = [look.tparam_addr[i] for i in range(cfg.vec_lanes)]
        for i, bank_words in enumerate(region("tparam", VPARAM_LUT_WORDS, cfg.rows, tokens)):
            t = tokens[i]
            m.d.comb += look.tparam_data[i].eq(
                Cat(*bank_words).word_select(t[:lb], VPARAM_BITS) if lb else bank_words[0])
        return m

    @staticmethod
    def _copy(m, name, depth, windex, wen, word, rindex):
        """One copy of a bank's words: written at ``windex`` when ``wen`` (synchronous), read at
        ``rindex`` (asynchronous); a memory, or a register for one word."""
        if depth == 1:
            reg = Signal(VPARAM_BITS, name=name)
            with m.If(wen):
                m.d.sync += reg.eq(word)
            return reg
        mem = Memory(shape=VPARAM_BITS, depth=depth, init=[])
        m.submodules[name] = mem
        wp = mem.write_port()
        rp = mem.read_port(domain="comb")
        m.d.comb += [wp.addr.eq(windex), wp.en.eq(wen), wp.data.eq(word), rp.addr.eq(rindex)]
        return rp.data

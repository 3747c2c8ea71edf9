"""The tile's PIM port: PIM instructions go to the PIM banks, which live with the DRAM.

PIM banks are DRAM (docs/pim.md): their global buffers, MAC lanes and result registers sit in the
memory, not in the tile. The tile keeps the PIM unit's queue, tokens and busy count
(:mod:`.tile`), and this front end hands each PIM instruction over the port; the banks (in
co-simulation :class:`~.pim_unit.PimUnit` with the DRAM model, :class:`~.tile_system.TileSystem`)
execute it and reach the tile's scratchpads through the port's two windows: ACT words read for
``PIM_GBUF`` and ACC words written for ``PIM_READ``. Every signal passes straight through, so the
port adds no cycle: the timing is :func:`mixpim.models.pim_timing.pim_cycles`'.
"""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from .common import ConfigComponent, check_config
from .pim_unit import pim_unit_members

__all__ = ["PimPortSignature", "PimFrontEnd"]


class PimPortSignature(wiring.Signature):
    """The PIM port, seen from the tile.

    Members
    -------
    start : Out(1), start ``opcode`` / ``inst`` (only while ``busy`` is low)
    opcode : Out(8), one of the PIM opcodes
    inst : Out(:func:`~.pim_unit.pim_layout`), the decoded operands
    busy : In(1), from the ``start`` cycle to the ``done`` cycle inclusive
    done : In(1), the instruction's last cycle
    r_act : In(:class:`~.dma.SpadReadSignature`), 1 ACT word: the banks read it (``PIM_GBUF``)
    w_acc : In(:class:`~.dma.SpadWriteSignature`), 1 ACC word: the banks write it (``PIM_READ``)
    """

    def __init__(self, config):
        unit = pim_unit_members(check_config(config))   # the unit's members, seen from outside
        super().__init__({"start": unit["start"].flip(), "opcode": unit["i_opcode"].flip(),
                          "inst": unit["i_inst"].flip(), "busy": unit["busy"].flip(),
                          "done": unit["done"].flip(), "r_act": unit["r_act"].flip(),
                          "w_acc": unit["w_acc"].flip()})


class PimFrontEnd(ConfigComponent):
    """The tile's PIM unit: its instructions pass to ``port`` (module docstring).

    Members: those of :class:`~.pim_unit.PimUnit` the tile uses (``start``, ``i_opcode``,
    ``i_inst``, ``busy``, ``done``, ``r_act``, ``w_acc``) and ``port`` :
    Out(:class:`PimPortSignature`).
    """

    def _members(self, config):
        return {**pim_unit_members(config), "port": Out(PimPortSignature(config))}

    def elaborate(self, platform):
        m = Module()
        port, r_act, w_acc = self.port, self.r_act, self.w_acc
        m.d.comb += [port.start.eq(self.start), port.opcode.eq(self.i_opcode),
                     port.inst.eq(self.i_inst), self.busy.eq(port.busy), self.done.eq(port.done),
                     r_act.en.eq(port.r_act.en), r_act.addr.eq(port.r_act.addr),
                     port.r_act.data.eq(r_act.data),
                     w_acc.en.eq(port.w_acc.en), w_acc.addr.eq(port.w_acc.addr),
                     w_acc.data.eq(port.w_acc.data)]
        return m

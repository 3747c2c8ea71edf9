"""Measured results for docs/pim.md and docs/results.md: the multi-channel DRAM and the PIM banks
on the timing model (the one cycle model the RTL is checked against).

    .venv/bin/python bench/bench_pim.py [--out bench/results/pim.json]

* **DMA streaming**: one LOAD of 1 MiB into ACT on ``neupims`` (contiguous: rows rotate over the
  32 channels) and 1 MiB from one channel only (every 32nd DRAM row); bytes per cycle against a
  channel's peak, ``dram_bus_bytes / t_ccd_s`` (16 B/cycle). The same on ``npu128``, where the
  issue measured 17.7 of 64 B/cycle (28%) before look-ahead activations.
* **PIM GEMV**: q . K^T over a 2,048-token context, head_dim 128, on one channel of ``neupims``
  (8 row groups of 256 tokens: one dot PIM_GEMV per row group, all 32 banks in lock step) and on
  all 32 channels at once (``chans`` 32: 32 requests); MACs per cycle against the banks' bound
  ``banks * pim_lanes / t_ccd_l`` per channel, for the GEMVs alone and with the PIM_READ of the
  2,048 scores; with the preset's one PIM row buffer per bank and with two (``pim_row_buffers``
  2: a PIM_ACT opens each next row group while the lanes compute).
* **Dual vs single row buffers**: a program that streams a 4096 x 4096 INT4 weight matrix
  through the array (one LOAD of 32 groups per output tile, one GEMM) while the PIM unit runs
  4,096 GEMVs of attention: cycles in both modes and with no PIM work at all.
* **Decode attention** (compiled, ``tiny`` and ``neupims`` with one and two PIM row buffers):
  cycles of one step for a batch of requests with different context lengths, both modes.
"""

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from mixpim.compiler.attention import AttentionBatch, lower_decode_attention
from mixpim.compiler.emit import Emitter
from mixpim.models.config import preset
from mixpim.models.isa import Instruction, Opcode, Spad
from mixpim.models.tile_timing import simulate

MIB = 1 << 20


def dma_streaming(name):
    cfg = preset(name)
    word = cfg.act_word_bytes
    peak = cfg.dram_bus_bytes / cfg.t_ccd_s
    out = {"preset": name, "peak_bytes_per_cycle": peak}
    rb, nch = cfg.dram_row_bytes, cfg.dram_channels
    cases = {"contiguous": dict(words=MIB // word, rows=1, stride=0)}
    if nch > 1:  # one channel: one DRAM row of every nch
        cases["one_channel"] = dict(words=rb // word, rows=MIB // rb, stride=nch * rb)
    for case, kw in cases.items():
        t = simulate(cfg, [Instruction(Opcode.LOAD, spad=Spad.ACT, spad_addr=0, dram_addr=0, **kw),
                           Instruction(Opcode.HALT)])
        d = int(t.end[0] - t.start[0] + 1)
        out[case] = {"bytes": MIB, "cycles": d, "bytes_per_cycle": MIB / d,
                     "fraction_of_peak": MIB / d / peak}
    return out


def pim_gemv(chans, buffers=1):
    """q . K^T over 2,048 tokens on ``chans`` channels of ``neupims`` with ``buffers`` PIM row
    buffers per bank (2: a PIM_ACT before each GEMV opens the next row group meanwhile)."""
    cfg = preset("neupims").replace(pim_row_buffers=buffers)
    dk, ctx = 128, 2048
    per_bank = cfg.dram_row_bytes // dk
    group = per_bank * cfg.dram_banks
    groups = ctx // group
    def act(row):
        return Instruction(Opcode.PIM_ACT, ch=0, chans=chans, bank=0, banks=cfg.dram_banks, row=row)

    prog = [act(0)] if buffers == 2 else []
    for r in range(groups):
        if buffers == 2 and r + 1 < groups:
            prog.append(act(r + 1))
        prog.append(Instruction(Opcode.PIM_GEMV, ch=0, chans=chans, bank=0, banks=cfg.dram_banks,
                                row=r, col=0, gaddr=0, len=dk, n=per_bank, res=r * per_bank))
    last_gemv = len(prog) - 1
    read = Instruction(Opcode.PIM_READ, ch=0, chans=chans, bank=0, banks=cfg.dram_banks, res=0,
                       n=groups * per_bank, acc_addr=0, chan_stride=ctx // cfg.cols, word_stride=1)
    t = simulate(cfg, prog + [read, Instruction(Opcode.HALT)])
    macs = chans * ctx * dk
    bound = chans * cfg.dram_banks * cfg.pim_lanes / cfg.t_ccd_l  # MACs per cycle
    gemv_cycles = int(t.end[last_gemv] - t.start[0] + 1)
    all_cycles = int(t.end[last_gemv + 1] - t.start[0] + 1)
    steps = per_bank * dk // cfg.pim_lanes
    return {"channels": chans, "pim_row_buffers": buffers, "context": ctx, "head_dim": dk,
            "instructions": len(prog), "macs": macs,
            "bound_macs_per_cycle": bound, "gemv_cycles": gemv_cycles,
            "gemv_fraction_of_bound": macs / gemv_cycles / bound,
            "with_read_cycles": all_cycles, "with_read_fraction_of_bound": macs / all_cycles / bound,
            "one_buffer_row_limit": steps * cfg.t_ccd_l / (steps * cfg.t_ccd_l + cfg.t_rp + cfg.t_rcd)}


def dual_vs_single(gemvs=4096):
    """Weights of a 4096 x 4096 INT4 projection streamed through the array (one LOAD of 32 groups
    per output tile into a double buffer, one GEMM each) and ``gemvs`` independent PIM_GEMVs of
    attention (all 32 channels and banks, head_dim 128, 8 tokens per bank, a new row every 8)
    in one program, interleaved in program order."""
    out = {}
    for mode in ("dual", "single"):
        cfg = preset("neupims").in_pim_mode(mode)
        em = Emitter(cfg)
        k_groups, n_tiles = 4096 // cfg.group, 4096 // cfg.cols
        words = k_groups * cfg.group
        per_tile = -(-gemvs // n_tiles)
        done = 0
        for tile in range(n_tiles):
            buf = tile % 2 * words
            em.load(Spad.WGT, buf, tile * words * cfg.wgt_word_bytes, words)
            em.gemm(0, buf, 0, 0, k_groups)
            for _ in range(min(per_tile, gemvs - done)):
                em.emit(Opcode.PIM_GEMV, ch=0, chans=32, bank=0, banks=32, row=2048 + done // 8 % 1024,
                        col=0, gaddr=0, len=128, n=8, res=0)
                done += 1
        t = simulate(cfg, em.instructions())
        out[mode] = {"cycles": t.cycles, "busy": dict(zip(("DMA", "GEMM", "VEC", "PIM"), t.busy))}
    out["gemvs"] = gemvs
    out["single_over_dual"] = out["single"]["cycles"] / out["dual"]["cycles"]
    return out


def decode_attention(name, lengths, heads, dk, **changes):
    rng = np.random.default_rng(0)
    b = len(lengths)
    batch = AttentionBatch(*(rng.normal(0, 2, (b, heads, dk)).astype(np.float32) for _ in range(3)),
                           tuple(rng.normal(0, 2, (n, heads, dk)).astype(np.float32) for n in lengths),
                           tuple(rng.normal(0, 1, (n, heads, dk)).astype(np.float32) for n in lengths))
    out = {"preset": name, "changes": changes, "lengths": list(lengths), "heads": heads,
           "head_dim": dk}
    for mode in ("dual", "single"):
        cfg = preset(name).replace(**changes).in_pim_mode(mode)
        t0 = time.perf_counter()
        c = lower_decode_attention(cfg, batch)
        t1 = time.perf_counter()
        t = simulate(cfg, c.program.instructions)
        t2 = time.perf_counter()
        out[mode] = {"cycles": t.cycles, "busy": dict(zip(("DMA", "GEMM", "VEC", "PIM"), t.busy)),
                     "instructions": len(c.program.instructions), "compile_s": t1 - t0,
                     "simulate_s": t2 - t1}
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="bench/results/pim.json")
    args = p.parse_args()
    res = {"machine": platform.processor() or platform.machine(),
           "dma": [dma_streaming("neupims"), dma_streaming("npu128")],
           "gemv": [pim_gemv(1), pim_gemv(32), pim_gemv(1, 2), pim_gemv(32, 2)],
           "dual_vs_single": dual_vs_single(), "no_pim": dual_vs_single(0)["dual"],
           "attention": [decode_attention("tiny", (5, 15, 16, 17), 2, 32),
                         # issue 9's stand-alone kernel (compiler/attention.py) takes INT8 activations
                         decode_attention("neupims", (300, 217, 566, 2047) * 8, 1, 128, pe="mixpe-w4a8",
                                          act_words=65536, acc_words=65536, vparam_words=65536),
                         decode_attention("neupims", (300, 217, 566, 2047) * 8, 1, 128, pe="mixpe-w4a8",
                                          act_words=65536, acc_words=65536, vparam_words=65536,
                                          pim_row_buffers=2)]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()

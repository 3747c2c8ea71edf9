"""Decode attention on the RTL tile (the issue's acceptance): MiniLM's query, key and value
vectors of a batch of four requests with different context lengths, compiled
(compiler/attention.py) and run on the Verilated tile in both row-buffer modes: every output word
and every status counter equal to the golden model, accuracy against float attention."""

import dataclasses

import numpy as np
import pytest

from mixpim.compiler.attention import lower_decode_attention
from mixpim.models.config import preset
from mixpim.models.isa import Opcode
from mixpim.sim.tile_cosim import run_programs
from helpers import TINY_SINGLE


@pytest.fixture(scope="module")
def batch():
    ck = pytest.importorskip("mixpim.compiler.checkpoint")
    from mixpim.sim.attention_data import minilm_attention_batch
    try:
        b = minilm_attention_batch(heads=2)
    except ck.CheckpointError as e:
        pytest.skip(str(e))
    assert b.batch == 4 and len({len(k) for k in b.k_cache}) == 4
    return b


# "ahead": with tiny's two PIM row buffers, the PIM_ACTs that open every row group ahead (the
# compiler's own choice on tiny is without them: they cost more than they hide on its timing)
@pytest.mark.parametrize("mode", ["dual", "ahead", "single"])
def test_decode_attention_on_the_rtl_tile(batch, mode):
    tiny = preset("tiny")
    compiled = lower_decode_attention(tiny, batch, open_ahead=mode == "ahead")
    cfg = TINY_SINGLE if mode == "single" else tiny  # (no GEMM: the PE kind does not matter)
    program = dataclasses.replace(compiled.program, config=cfg)
    assert (Opcode.PIM_ACT in {i.op for i in program.instructions}) == (mode == "ahead")
    run, = run_programs(cfg, [program])
    assert run.ok, run.report()
    assert run.golden.status.error == 0 and run.rtl_status["busy"][3] > 0
    out = compiled.output(run.golden)  # = the RTL's output: compared word for word above
    for i in range(4):
        a, b = out[i], compiled.reference[i]
        assert float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) >= 0.99, i

"""Decode attention on the RTL tile (the issue's acceptance): MiniLM's query, key and value
vectors of a batch of four requests with different context lengths, compiled
(compiler/attention.py) and run on the Verilated tile in both row-buffer modes: every output word
and every status counter equal to the golden model, accuracy against float attention."""

import dataclasses

import numpy as np
import pytest

from mixpim.compiler.attention import lower_decode_attention
from mixpim.models.config import preset
from mixpim.sim.tile_cosim import run_programs


@pytest.fixture(scope="module")
def compiled():
    ck = pytest.importorskip("mixpim.compiler.checkpoint")
    from mixpim.sim.attention_data import minilm_attention_batch
    try:
        batch = minilm_attention_batch(heads=2)
    except ck.CheckpointError as e:
        pytest.skip(str(e))
    assert batch.batch == 4 and len({len(k) for k in batch.k_cache}) == 4
    return lower_decode_attention(preset("tiny"), batch)


@pytest.mark.parametrize("mode", ["dual", "single"])
def test_decode_attention_on_the_rtl_tile(compiled, mode):
    cfg = preset("tiny").replace(pim_mode=mode)
    program = dataclasses.replace(compiled.program, config=cfg)
    run, = run_programs(cfg, [program])
    assert run.ok, run.report()
    assert run.golden.status.error == 0 and run.rtl_status["busy"][3] > 0
    out = compiled.output(run.golden)  # = the RTL's output: compared word for word above
    for i in range(4):
        a, b = out[i], compiled.reference[i]
        assert float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) >= 0.99, i

"""Performance reports (sim/perf.py, sim/perf_report.py, ``mixpim report``): the scaled cycles of
a model equal a whole-model simulation, the operation and byte counts equal counts written here
independently, and the command's outputs and refusals."""

import dataclasses
import json

import pytest
from helpers import rejects

from mixpim.compiler.model_zoo import model_config
from mixpim.models.config import preset
from mixpim.sim.cli import main
from mixpim.sim.perf import PerfError, Workload, _timed, analyze, order_requests

SMALL = dataclasses.replace(model_config("smollm2-135m"), hidden=256, heads=4, kv_heads=2, ffn=512,
                            vocab=384, layers=5)
#: 128x128 (the neupims preset) with a head of 128: RoPE pairs two heads' halves per block
WIDE = dataclasses.replace(SMALL, hidden=512)
DECODE = Workload("decode", (5, 17, 40, 3))


@pytest.mark.parametrize("hw, mc, workload, system", [
    ("llm", SMALL, DECODE, "plain"),
    ("llm", SMALL, DECODE, "interleaved"),
    ("llm", SMALL, Workload("prefill", (40,)), "plain"),
    ("neupims", WIDE, DECODE, "plain"),
    ("neupims", WIDE, Workload("prefill", (40,)), "plain"),
    ("llm", SMALL, DECODE, "npu"),
], ids=["llm-decode", "llm-interleaved", "llm-prefill", "neupims-decode", "neupims-prefill", "llm-npu"])
def test_scaled_cycles_equal_the_whole_model(hw, mc, workload, system):
    """A 5-block model timed from a few simulated blocks and scaled equals the 5-block program on
    the cycle model, cycle for cycle; the operators' charged cycles add up to it."""
    cfg = preset(hw)
    r = analyze(mc, cfg, workload, system=system)
    whole = _timed(mc, cfg, r.workload, system, mc.layers)  # (a decode batch in the report's order)
    assert r.blocks < mc.layers and r.layer_cycles > 0
    assert r.cycles == whole.cycles
    assert sum(st.cycles for st in r.total_ops().values()) == r.cycles
    assert sum(st.cycles for st in r.layer_ops.values()) == r.layer_cycles
    # per operator, the scaled model's busy cycles, MACs and bytes are the whole program's
    by_name = {}
    for label, st in whole.ops.items():
        name = label.split(".", 1)[1] if label[0] == "L" and label[1].isdigit() else label
        by_name.setdefault(name, []).append(st)
    for name, st in r.total_ops().items():
        assert st.busy == [sum(s.busy[u] for s in by_name[name]) for u in range(4)], name
        assert st.array_macs == sum(s.array_macs for s in by_name[name])
        assert st.bytes == {k: sum(s.bytes[k] for s in by_name[name]) for k in st.bytes}


def test_counts_equal_an_independent_count():
    """Llama-2-7B's shapes on the neupims tile (a decode step of 128 requests of 1,000 cached
    tokens; one block simulated on its own): useful MACs 2 M N K / 2 per projection,
    ``heads x head_dim x context`` per request for the scores and the context; every weight
    streamed once at 4 bits, the group scales at 3 bytes per group and column."""
    mc = dataclasses.replace(model_config("llama2-7b"), layers=1)
    r = analyze(mc, preset("neupims"), Workload("decode", (1000,) * 128))
    B, h, f, V = 128, 4096, 11008, 32000
    assert r.useful_macs == {"qkv_proj": B * 3 * h * h, "o_proj": B * h * h, "gate_up_proj": B * 2 * f * h,
                             "down_proj": B * h * f, "lm_head": B * V * h,
                             "attn_score": B * 32 * 128 * 1001, "attn_context": B * 32 * 128 * 1001}
    ops = r.layer_ops
    for name, (n, k) in {"qkv_proj": (3 * h, h), "o_proj": (h, h), "gate_up_proj": (2 * f, h),
                         "down_proj": (h, f)}.items():
        assert ops[name].bytes["weights"] == n * k // 2, name
        assert ops[name].bytes["scales"] == n * (k // 128) * 3, name  # one META entry per group
        assert ops[name].array_macs == r.useful_macs[name]  # 128 requests fill the array's rows
    # scores and context on PIM: whole row groups of 256 tokens (1,001 -> 1,024), the context
    # once per probability digit
    assert ops["attn_score"].pim_macs == B * 32 * 128 * 1024
    assert ops["attn_context"].pim_macs == 2 * B * 32 * 128 * 1024
    assert r.outside_ops["lm_head"].bytes["weights"] == V * h // 2
    assert sum(st.bytes["kv_cache"] for st in ops.values()) == 0  # PIM reads the cache in the banks


def test_counts_of_attention_on_the_array():
    """The npu-only system (Llama-2-7B's shapes, 16 requests of 300 cached tokens, neupims' 128x128
    array): the KV cache streamed from DRAM in whole key blocks of 128 keys and value groups of
    128 (FP16 words of 256 bytes), each request's key block that gains the new key written back
    once per KV head (it was read with the others), its new value one word per feature block; the array issues one
    score GEMM per key block and one ``P V`` GEMM per request and head, a full 128x128 tile each."""
    mc = dataclasses.replace(model_config("llama2-7b"), layers=1)
    B, n, heads, hd, ab, rc = 16, 301, 32, 128, 256, 128 * 128
    r = analyze(mc, preset("neupims"), Workload("decode", (n - 1,) * B), system="npu")
    ops = r.layer_ops
    nkb, mg = -(-n // 128), -(-n // 128) * 128
    assert ops["attn_score"].bytes["kv_cache"] == B * heads * nkb * hd * ab
    assert ops["attn_context"].bytes["kv_cache"] == B * heads * mg * ab
    assert ops["kv_append"].bytes["kv_cache"] == B * heads * (hd + 1) * ab
    assert ops["attn_score"].array_macs == B * heads * nkb * rc * hd
    # P V, and one zeroing GEMM of a group per head for the collectors
    assert ops["attn_context"].array_macs == B * heads * rc * mg + heads * rc * 128
    assert ops["kv_append"].array_macs == heads * rc * 128  # the new keys transposed
    assert r.useful_macs["attn_score"] == r.useful_macs["attn_context"] == B * heads * hd * n
    assert sum(st.pim_macs for st in ops.values()) == 0


def test_caches_that_do_not_fit_share_the_dram():
    """A decode batch whose KV caches take more bank rows than the DRAM has is timed with every
    request block on the same rows (timing only); on this model, in the same cycles as with a
    DRAM large enough for each block's own rows. On the array every request shares one region."""
    from mixpim.compiler.dram_alloc import DramFull
    from mixpim.compiler.llama_cache import block_caches
    from mixpim.compiler.npu_attention import npu_block_caches
    wl, small = Workload("decode", (1000,) * 48), preset("llm").replace(dram_rows=640)
    with pytest.raises(DramFull):
        block_caches(small, SMALL, [1001] * 48, layers=3, shared=True)
    assert analyze(SMALL, small, wl).cycles == analyze(SMALL, preset("llm"), wl).cycles
    shared = npu_block_caches(small, SMALL, [100] * 40, layers=3, shared=True, share_requests=True)
    assert len({(c.base, c.nbytes) for c in shared[0]}) == 1 and shared[0][0].k_addr(5, 0, 0) == shared[0][0].base


def test_request_order():
    """Sorted into slots of ``dram_channels`` (2 on llm), full slots dealt alternately to the
    batch's halves, a partial slot last."""
    assert order_requests(preset("llm"), (5, 17, 40, 3, 8, 30, 1)) == (40, 30, 5, 3, 17, 8, 1)
    r = analyze(dataclasses.replace(SMALL, layers=1), preset("llm"), Workload("decode", (5, 40, 17, 3)))
    assert r.workload.lengths == (40, 17, 5, 3)


def test_refusals():
    cfg = preset("neupims")
    rejects(PerfError, "the interleaved system is a decode schedule; a prefill runs plain",
            lambda: analyze(SMALL, cfg, Workload("prefill", (4,)), system="interleaved"))
    rejects(PerfError, "system must be one of plain, interleaved, npu, not 'fast'",
            lambda: analyze(SMALL, cfg, DECODE, system="fast"))
    rejects(PerfError, "a prefill report takes one prompt, not 2", lambda: Workload("prefill", (3, 4)))
    rejects(PerfError, "mode must be one of prefill, decode, not 'train'", lambda: Workload("train", (3,)))


def _report(tmp_path, *args):
    return main(["report", *args, "-o", str(tmp_path / "out")])


def test_report_command(tmp_path, capsys):
    """``mixpim report`` writes report.md, report.json and the plots; --compare runs blocked and
    NeuPIMs' interleaved schedule on the same step."""
    mc = dataclasses.replace(SMALL, layers=4)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "llama", "num_hidden_layers": 4, "hidden_size": 256,
                                "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 512,
                                "vocab_size": 384, "max_position_embeddings": 2048, "rms_norm_eps": 1e-5,
                                "rope_theta": 10000.0, "hidden_act": "silu"}))
    assert _report(tmp_path, str(path), "--hw", "llm", "--mode", "decode", "--batch", "6", "--ctx", "30",
                   "--compare", "npu-only,blocked,neupims", "--clock-mhz", "500", "--json") == 0
    out = json.loads(capsys.readouterr().out)
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["breakdown.png", "compare.png", "report-blocked.json", "report-blocked.md",
                     "report-npu-only.json", "report-npu-only.md", "report.json", "report.md", "roofline.png",
                     "timeline.png"]
    assert set(out["compare"]) == {"npu-only", "blocked", "neupims"} and out["system"] == "interleaved"
    assert json.loads((tmp_path / "out" / "report-npu-only.json").read_text())["system"] == "npu"
    npu = analyze(mc, preset("llm"), Workload("decode", (30,) * 6), system="npu")
    assert out["compare"]["npu-only"]["cycles"] == npu.cycles
    assert out["latency"]["tokens_per_s"] == pytest.approx(6 / (out["cycles"] / 500e6))
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## How to read this report" in md and "| qkv_proj |" in md
    r = analyze(mc, preset("llm"), Workload("decode", (30,) * 6), system="interleaved")
    assert out["cycles"] == r.cycles
    assert _report(tmp_path, str(path), "--hw", "llm", "--mode", "prefill", "--prompt-len", "20") == 0
    assert "cycles" in capsys.readouterr().out
    assert _report(tmp_path, str(path), "--hw", "llm", "--mode", "decode", "--batch", "6", "--ctx", "30",
                   "--system", "npu", "--json") == 0
    solo = json.loads(capsys.readouterr().out)
    assert solo["system"] == "npu" and solo["cycles"] == npu.cycles
    # without --json: each system's cycles, throughput (per million cycles without a clock) and ratio
    assert _report(tmp_path, str(path), "--hw", "llm", "--mode", "decode", "--batch", "6", "--ctx", "30",
                   "--compare", "npu-only,neupims") == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == (f"npu-only: {npu.cycles:,} cycles, {6e6 / npu.cycles:.3g} tokens per million cycles "
                     f"(throughput {r.cycles / npu.cycles:.2f}x neupims)")


@pytest.mark.parametrize("args, message", [
    (["smollm2-135m", "--mode", "prefill", "--prompt-len", "8", "--batch", "2"],
     "--batch applies to --mode decode, not prefill"),
    (["smollm2-135m", "--mode", "prefill"], "--mode prefill needs --prompt-len P (at least 1)"),
    (["smollm2-135m", "--mode", "decode"], "--mode decode needs --ctx L or --trace FILE (one of them)"),
    (["smollm2-135m", "--mode", "decode", "--ctx", "4", "--trace", "sharegpt"],
     "--mode decode needs --ctx L or --trace FILE (one of them)"),
    (["smollm2-135m", "--mode", "decode", "--ctx", "4", "--batch", "0"], "--batch must be at least 1, not 0"),
    (["smollm2-135m", "--mode", "decode", "--ctx", "4", "--compare", "blocked,blocked"],
     "--compare takes distinct names of npu-only, blocked, dual, neupims, not 'blocked,blocked'"),
    (["minilm-l6", "--mode", "prefill", "--prompt-len", "4"], "minilm-l6 is a bert encoder; reports time "
                                                                 "decoders (LLaMA and GPT families)"),
    (["no-such-model", "--mode", "decode", "--ctx", "4"], "no model preset 'no-such-model'"),
    (["smollm2-135m", "--mode", "decode", "--ctx", "4", "--clock-mhz", "0"], "--clock-mhz must be positive"),
    (["smollm2-135m", "--mode", "decode", "--ctx", "4", "--clock-mhz", "inf"], "--clock-mhz must be positive and "
                                                                              "finite, not inf"),
])
def test_report_errors(tmp_path, capsys, args, message):
    assert _report(tmp_path, *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("mixpim: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name, unit", [("norm_unit", "VNORM needs the vector unit's norm datapath"),
                                        ("softmax_unit", "VSOFT needs the vector unit's softmax datapath")])
def test_report_on_a_tile_without_a_datapath(tmp_path, capsys, name, unit):
    hw = tmp_path / "hw.toml"
    hw.write_text(preset("llm").replace(**{name: False}).to_toml())
    args = ["--hw", str(hw), "--mode", "prefill", "--prompt-len", "8"]
    assert _report(tmp_path, "smollm2-135m", *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("mixpim: error: ") and unit in err and err.count("\n") == 1
    assert f"this tile has {name} = false" in err and not (tmp_path / "out").exists()


def test_decode_on_a_tile_without_the_pim_unit(tmp_path, capsys):
    # attention on PIM (the default system) cannot run there; the array's own attention can
    hw = tmp_path / "hw.toml"
    hw.write_text(preset("llm").replace(pim_unit=False).to_toml())
    args = ["--hw", str(hw), "--mode", "decode", "--ctx", "16"]
    assert _report(tmp_path, "smollm2-135m", *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("mixpim: error: ") and err.count("\n") == 1
    assert "PIM_GBUF needs the PIM unit; this tile has pim_unit = false" in err
    assert not (tmp_path / "out").exists()


def test_capacity():
    """The DRAM a model keeps: Llama-2-7B's 4-bit weights with a 3-byte META entry per group of 128
    and column (its 6.74 B parameters less the embedding table, which the host keeps), and INT8
    keys and values of every cached token."""
    from mixpim.sim.perf_report import _capacity
    mc = model_config("llama2-7b")
    r = analyze(dataclasses.replace(mc, layers=1), preset("neupims"), Workload("decode", (100, 200)))
    r = dataclasses.replace(r, model=mc)
    cap = _capacity(r)
    h, f, V = 4096, 11008, 32000
    n_k = 32 * (4 * h * h + 3 * h * f) + V * h  # every Linear's N x K, and the LM head
    assert cap["weights_bytes"] == n_k // 2 + n_k // 128 * 3
    assert cap["kv_cache_bytes"] == 2 * 32 * h * (101 + 201) and cap["fits"]

"""Generation (sim/generate.py) on a small random checkpoint written as a real GGUF file: the
decode steps compiled ahead in a forked process give the tokens and cycles of the steps compiled
in this process, and the compiled steps come back without the compiler's weight images."""

import multiprocessing

from tiny_gguf import Letters, write_tiny_llama

from mixpim.compiler.calibrate import calibrate_llama
from mixpim.compiler.gguf_checkpoint import llama_weights
from mixpim.compiler.llama_float import LlamaFloat
from mixpim.models.config import preset
from mixpim.sim import generate


def test_steps_compiled_ahead_in_a_second_process(tmp_path, monkeypatch):
    w = llama_weights(write_tiny_llama(tmp_path / "tiny.gguf", hidden=64, heads=2, kv_heads=1, layers=2))
    model = LlamaFloat(w, w.config)
    ranges = calibrate_llama(model, [list(range(3, 23)), [4, 8, 15, 16, 23]])
    gen = generate.Generator.of(model, Letters(), preset("llm"), ranges)
    prompts, new = ["hello", "abc"], 5
    forked = gen.generate(prompts, new)
    assert [len(i) for i in forked.ids] == [new, new] and forked.text == [Letters().decode(i) for i in forked.ids]
    assert [r.kind for r in forked.runs] == ["prefill", "prefill"] + ["step"] * (new - 1)
    # without fork: the same steps compiled here
    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    here = gen.generate(prompts, new)
    assert here.ids == forked.ids and here.runs == forked.runs
    assert all(r.cycles > r.busy["PIM"] > 0 for r in here.runs[2:])
    # a step's pickle names the weight images instead of holding them
    payload = generate._compile_step([7, 5])
    big = [c for c in gen.compiler.constants() if len(c) >= 64]
    assert big and not any(c in payload for c in big)

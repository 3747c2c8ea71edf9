"""``mixpim sweep`` (sim/sweep.py): a small grid on the local process pool and as Ray tasks (a Ray
instance started on this machine), its table, Pareto front and refusals."""

import json

import pytest

from mixpim.sim.cli import main
from mixpim.sim.sweep import SweepError, expand, load_spec, pareto

MODEL = {"model_type": "llama", "num_hidden_layers": 4, "hidden_size": 128, "num_attention_heads": 2,
         "num_key_value_heads": 2, "intermediate_size": 256, "vocab_size": 256,
         "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu"}


def _spec(tmp_path, **extra):
    (tmp_path / "model.json").write_text(json.dumps(MODEL))
    spec = {"models": [str(tmp_path / "model.json")], "base": "llm", "mode": "decode", "batch": 3,
            "ctx": [10], "system": ["plain", "interleaved"], "clock_mhz": 200, "hw": {"pim_lanes": [4, 8]}}
    spec.update(extra)
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def _sweep(tmp_path, spec, *args, out="out"):
    return main(["sweep", str(spec), "-o", str(tmp_path / out), "--json", *args])


def test_sweep_local_and_on_ray(tmp_path, capsys):
    """Four points (two PIM lane counts x two schedules): the table, the per-point reports, the
    Pareto plot; the same figures from Ray tasks."""
    spec = _spec(tmp_path)
    assert _sweep(tmp_path, spec, "--jobs", "2") == 0
    local = json.loads(capsys.readouterr().out)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["pareto.png", "points", "points.csv", "points.json"]
    assert sorted(p.name for p in (out / "points").iterdir()) == [f"{i}.{x}" for i in range(4) for x in ("json", "md")]
    rows = local["points"]
    assert [(r["pim_lanes"], r["system"]) for r in rows] == [(4, "plain"), (4, "interleaved"), (8, "plain"),
                                                            (8, "interleaved")]
    assert all(r["cycles"] > 0 and r["error"] == "" for r in rows)
    assert rows[0]["tokens_per_s"] == pytest.approx(3 / (rows[0]["cycles"] / 200e6), rel=1e-4)
    assert json.loads((out / "points" / "2.json").read_text())["cycles"] == rows[2]["cycles"]
    assert (out / "points.csv").read_text().splitlines()[0].startswith("point,model,pim_lanes,pe,array")
    assert local["pareto"] == pareto(rows) and local["pareto"]
    assert _sweep(tmp_path, spec, "--ray", "local", out="ray") == 0
    on_ray = json.loads(capsys.readouterr().out)
    assert [r["cycles"] for r in on_ray["points"]] == [r["cycles"] for r in rows]


def test_pareto_front():
    rows = [{"point": i, "model": "m", "mode": "decode", "batch": 1, "cycles": 1, "tokens_per_kcycle": t, "luts": c}
            for i, (t, c) in enumerate([(1.0, 100), (2.0, 200), (1.5, 300), (2.0, 150), (0.5, 50)])]
    assert pareto(rows) == [0, 3, 4]


@pytest.mark.parametrize("extra, message", [
    ({"colour": "red"}, "unknown sweep keys colour"),
    ({"hw": {"wheels": [4]}}, "hw has no field wheels"),
    ({"hw": {"pim_lanes": [3]}}, "hw {'pim_lanes': 3}: "),
    ({"system": ["fast"]}, "system must be one of plain, interleaved, npu, not 'fast'"),
    ({"batch": [1.5]}, "batch must be integers"),
    ({"trace": "sharegpt"}, "mode decode needs ctx = [...] or trace = FILE (one of them)"),
    ({"mode": "prefill"}, "batch applies to mode decode, not prefill"),
    ({"hw": {"pim_lanes": list(range(1, 65)), "pim_gbuf_bytes": [2 ** k for k in range(4, 13)],
             "pim_res_regs": list(range(1, 9))}}, "the sweep has 9216 points; at most 4096"),
])
def test_spec_errors(tmp_path, capsys, extra, message):
    spec = _spec(tmp_path, **extra)
    assert _sweep(tmp_path, spec) == 2
    err = capsys.readouterr().err
    assert err.startswith("mixpim: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_spec_formats(tmp_path, capsys):
    toml = tmp_path / "spec.toml"
    toml.write_text('models = ["smollm2-135m"]\nbase = "llm"\nctx = 4\n[hw]\narray = [8, 16]\n')
    points, _ = expand(load_spec(toml.read_text(), "toml"))
    assert [(p.config.rows, p.config.cols) for p in points] == [(8, 8), (16, 16)]
    with pytest.raises(SweepError, match="not valid TOML"):
        load_spec("models = [", "toml")
    bad = tmp_path / "spec.yaml"
    bad.write_text("models: []")
    assert _sweep(tmp_path, bad) == 2
    assert "must be a .json or .toml file" in capsys.readouterr().err
    assert main(["sweep", str(toml), "-o", str(tmp_path / "o"), "--jobs", "2", "--ray", "local"]) == 2
    assert "--jobs and --ray do not go together" in capsys.readouterr().err

"""``mixpim fuzz`` (sim/fuzz.py): seeded random programs on the RTL tile and the golden model, in
batches on local processes and as Ray tasks; a difference is reported and fails the run."""

import json

import pytest

from mixpim.sim import tile_cosim
from mixpim.sim.cli import main


def test_fuzz_local_and_on_ray(tmp_path, capsys):
    assert main(["fuzz", "--programs", "8", "--batch", "4", "--jobs", "2", "-o", str(tmp_path), "--json"]) == 0
    local = json.loads(capsys.readouterr().out)
    assert local["programs"] == 8 and local["failed"] == 0 and local["error_codes"]["OK"] >= 4
    per = json.loads((tmp_path / "fuzz.json").read_text())["programs"]
    assert [r["seed"] for r in per] == list(range(8))
    assert all(r["bit_exact"] and r["cycle_exact"] and r["designed"] for r in per)
    assert main(["fuzz", "--programs", "8", "--batch", "4", "--ray", "local", "--json"]) == 0
    on_ray = json.loads(capsys.readouterr().out)
    assert on_ray == local


def test_a_difference_fails_the_run(monkeypatch, capsys):
    real = tile_cosim.golden_run

    def off_by_one(cfg, insts, segs, **kw):  # a golden model one cycle off
        res = real(cfg, insts, segs, **kw)
        if insts:
            object.__setattr__(res.status, "cycles", res.status.cycles + 1)
        return res
    monkeypatch.setattr(tile_cosim, "golden_run", off_by_one)
    assert main(["fuzz", "--programs", "2", "--jobs", "1"]) == 1
    out = capsys.readouterr().out
    assert "2 FAILED (seeds 0, 1)" in out and "status cycles" in out


@pytest.mark.parametrize("args, message", [
    (["--programs", "0"], "--programs must be in 1..1,000,000, not 0"),
    (["--programs", "2", "--batch", "0"], "--batch must be in 1..10,000, not 0"),
    (["--programs", "2", "--jobs", "2", "--ray", "local"], "--jobs and --ray do not go together"),
    (["--programs", "2", "--config", "npu128"], "--config: "),
])
def test_fuzz_errors(capsys, args, message):
    assert main(["fuzz", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mixpim: error: ") and message in err and err.count("\n") == 1

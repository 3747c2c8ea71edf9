"""Reset promotion onto ECP5 global networks (mixpim.sim.ecp5_globals) on small netlists."""

import json

import pytest

from mixpim.sim.ecp5_globals import PromotedNet, main, promote_file, promote_resets


def _ff(lsr, q):
    return {"type": "TRELLIS_FF", "connections": {"CLK": [2], "LSR": [lsr], "DI": [3], "Q": [q]}}


def _netlist(fanouts):
    """A top module whose net ``10 + i`` drives the LSR pins of ``fanouts[i]`` flip-flops and
    one LUT input."""
    cells, q = {}, 100
    for i, n in enumerate(fanouts):
        for k in range(n):
            cells[f"ff{i}_{k}"] = _ff(10 + i, q)
            q += 1
        cells[f"lut{i}"] = {"type": "LUT4", "connections": {"A": [10 + i], "Z": [q]}}
        q += 1
    cells["const_rst"] = _ff("0", q)
    names = {f"rst{i}": {"hide_name": 0, "bits": [10 + i], "attributes": {}} for i in range(len(fanouts))}
    names["a.long.name.of.rst0"] = {"hide_name": 0, "bits": [10], "attributes": {}}
    names["unconnected"] = {"hide_name": 0, "bits": [q + 1], "attributes": {}}
    ports = {"out": {"direction": "output", "bits": [q + 2]}}
    return {"modules": {"top": {"attributes": {"top": "00000000000000000000000000000001"},
                                "cells": cells, "netnames": names, "ports": ports}}}


def test_promotes_the_largest_reset_nets():
    """Nets with at least min_fanout LSR loads get a DCCA, largest first, at most max_nets;
    the DCCA drives only the LSR pins, the net keeps its other loads."""
    netlist = _netlist([5, 3, 2, 7])
    promoted = promote_resets(netlist, min_fanout=3, max_nets=2)
    assert promoted == [PromotedNet("rst3", 7), PromotedNet("rst0", 5)]
    cells = netlist["modules"]["top"]["cells"]
    dccas = {n: c for n, c in cells.items() if c["type"] == "DCCA"}
    assert set(dccas) == {"$mixpim_gbuf$rst3", "$mixpim_gbuf$rst0"}
    for i, name in ((3, "$mixpim_gbuf$rst3"), (0, "$mixpim_gbuf$rst0")):
        conn = dccas[name]["connections"]
        assert conn["CLKI"] == [10 + i] and conn["CE"] == ["1"]
        ffs = [c for n, c in cells.items() if n.startswith(f"ff{i}_")]
        assert {c["connections"]["LSR"][0] for c in ffs} == {conn["CLKO"][0]}
        assert cells[f"lut{i}"]["connections"]["A"] == [10 + i]
    assert all(c["connections"]["LSR"] == [11] for n, c in cells.items() if n.startswith("ff1_"))
    assert cells["const_rst"]["connections"]["LSR"] == ["0"]
    # the DCCAs drive new nets, numbered above every bit a cell, wire name or port uses
    outs = {c["connections"]["CLKO"][0] for c in dccas.values()}
    top = netlist["modules"]["top"]
    used = {b for n, c in cells.items() if n not in dccas for v in c["connections"].values()
            for b in v if isinstance(b, int)}
    used |= {b for n in top["netnames"].values() for b in n["bits"]} | {*top["ports"]["out"]["bits"]}
    assert len(outs) == 2 and min(outs) > max(used - outs)


def test_small_nets_stay_in_the_fabric():
    netlist = _netlist([5, 3])
    before = json.dumps(netlist, sort_keys=True)
    assert promote_resets(netlist, min_fanout=6) == []
    assert json.dumps(netlist, sort_keys=True) == before


def test_file_round_trip_and_errors(tmp_path, capsys):
    path = tmp_path / "net.json"
    path.write_text(json.dumps(_netlist([1200, 4])))
    assert promote_file(path) == [PromotedNet("rst0", 1200)]
    assert main([str(path)]) == 0   # a second pass leaves the net a DCCA drives alone
    assert "rst" not in capsys.readouterr().out
    cells = json.loads(path.read_text())["modules"]["top"]["cells"].values()
    assert sum(c["type"] == "DCCA" for c in cells) == 1

    path.write_text("{not json")
    assert main([str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mixpim: error: cannot promote the resets of") and err.count("\n") == 1
    assert path.read_text() == "{not json"     # left as it was
    path.write_text(json.dumps({"modules": {}}))
    assert main([str(path)]) == 2
    assert "the netlist has 0 top modules, not 1" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.json")]) == 2
    assert main([]) == 2


def test_rejects_bad_limits():
    with pytest.raises(ValueError, match="min_fanout must be a positive integer, not 0"):
        promote_resets(_netlist([1]), min_fanout=0)
    with pytest.raises(ValueError, match="max_nets must be an integer in 0..8, not 9"):
        promote_resets(_netlist([1]), max_nets=9)


def test_bits_of_one_bus_are_named_apart():
    """Two reset bits of one multi-bit net get a DCCA each, named by bit."""
    cells = {f"ff{b}_{k}": _ff(20 + b, 100 + 10 * b + k) for b in range(2) for k in range(3)}
    names = {"resets": {"hide_name": 0, "bits": [20, 21], "attributes": {}}}
    netlist = {"modules": {"top": {"attributes": {"top": 1}, "cells": cells, "netnames": names}}}
    promoted = promote_resets(netlist, min_fanout=3)
    assert promoted == [PromotedNet("resets[0]", 3), PromotedNet("resets[1]", 3)]
    dccas = {n: c for n, c in cells.items() if c["type"] == "DCCA"}
    assert set(dccas) == {"$mixpim_gbuf$resets[0]", "$mixpim_gbuf$resets[1]"}
    assert cells["ff1_0"]["connections"]["LSR"] == dccas["$mixpim_gbuf$resets[1]"]["connections"]["CLKO"]

"""High-fanout nets onto ECP5 global networks (mixpim.sim.ecp5_globals) on small netlists."""

import json

import pytest

from mixpim.sim.ecp5_globals import PromotedNet, main, promote_file, promote_nets


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
    """Nets with at least min_fanout loads on global pins get a DCCA, largest first, at most
    max_nets; the DCCA drives those pins, the net keeps its other loads (here the LUT's A pin
    counts too: 1 + the flip-flops)."""
    netlist = _netlist([5, 3, 2, 7])
    promoted = promote_nets(netlist, min_fanout=3, max_nets=2)
    assert promoted == [PromotedNet("rst3", 8), PromotedNet("rst0", 6)]
    cells = netlist["modules"]["top"]["cells"]
    dccas = {n: c for n, c in cells.items() if c["type"] == "DCCA"}
    assert set(dccas) == {"$mixpim_gbuf$rst3", "$mixpim_gbuf$rst0"}
    for i, name in ((3, "$mixpim_gbuf$rst3"), (0, "$mixpim_gbuf$rst0")):
        conn = dccas[name]["connections"]
        assert conn["CLKI"] == [10 + i] and conn["CE"] == ["1"]
        ffs = [c for n, c in cells.items() if n.startswith(f"ff{i}_")]
        assert {c["connections"]["LSR"][0] for c in ffs} == {conn["CLKO"][0]}
        assert cells[f"lut{i}"]["connections"]["A"] == conn["CLKO"]
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
    assert promote_nets(netlist, min_fanout=7) == []
    assert json.dumps(netlist, sort_keys=True) == before


def test_file_round_trip_and_errors(tmp_path, capsys):
    path = tmp_path / "net.json"
    path.write_text(json.dumps(_netlist([1200, 4])))
    assert promote_file(path) == [PromotedNet("rst0", 1201)]
    assert main([str(path)]) == 0   # a second pass leaves the net a DCCA drives alone
    assert "rst" not in capsys.readouterr().out
    cells = json.loads(path.read_text())["modules"]["top"]["cells"].values()
    assert sum(c["type"] == "DCCA" for c in cells) == 1

    path.write_text("{not json")
    assert main([str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mixpim: error: cannot put the nets of") and err.count("\n") == 1
    assert path.read_text() == "{not json"     # left as it was
    path.write_text(json.dumps({"modules": {}}))
    assert main([str(path)]) == 2
    assert "the netlist has 0 top modules, not 1" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.json")]) == 2
    assert main([]) == 2


def test_rejects_bad_limits():
    with pytest.raises(ValueError, match="min_fanout must be a positive integer, not 0"):
        promote_nets(_netlist([1]), min_fanout=0)
    with pytest.raises(ValueError, match="max_nets must be an integer in 0..8, not 9"):
        promote_nets(_netlist([1]), max_nets=9)


def test_enables_and_selects_by_bit():
    """Clock enables and LUT inputs count; data inputs stay in the fabric; the bits of one
    multi-bit net are named apart; DCCAs already in the netlist count against max_nets."""
    cells = {}
    for k in range(4):
        cells[f"ff{k}"] = {"type": "TRELLIS_FF", "connections": {"CE": [20], "DI": [21], "Q": [40 + k]}}
        cells[f"lut{k}"] = {"type": "LUT4", "connections": {"B": [21], "C": [22], "Z": [50 + k]}}
    cells["clock"] = {"type": "DCCA", "connections": {"CLKI": [1], "CE": ["1"], "CLKO": [2]}}
    names = {"en": {"hide_name": 0, "bits": [20], "attributes": {}},
             "sel": {"hide_name": 0, "bits": [21, 22], "attributes": {}}}
    netlist = {"modules": {"top": {"attributes": {"top": 1}, "cells": cells, "netnames": names}}}
    promoted = promote_nets(netlist, min_fanout=4, max_nets=3)
    assert promoted == [PromotedNet("en", 4), PromotedNet("sel[0]", 4)]   # sel[1] over budget
    by_name = {n: c["connections"]["CLKO"][0] for n, c in cells.items() if c["type"] == "DCCA"}
    assert set(by_name) == {"clock", "$mixpim_gbuf$en", "$mixpim_gbuf$sel[0]"}
    assert cells["ff0"]["connections"]["CE"] == [by_name["$mixpim_gbuf$en"]]
    assert cells["ff0"]["connections"]["DI"] == [21]                        # a data input
    assert cells["lut0"]["connections"]["B"] == [by_name["$mixpim_gbuf$sel[0]"]]
    assert cells["lut0"]["connections"]["C"] == [22]

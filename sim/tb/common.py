"""Helpers shared by the cocotb test modules: case loading, reset, result reporting."""

import json
import os

import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge


def load_case():
    """The case dict: numpy arrays; hex-string arrays stay strings (see :func:`ints`)."""
    with np.load(os.environ["MIXPIM_CASE"], allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def ints(hexes):
    """Python ints from an array of hex strings (payloads wider than 64 bits)."""
    return [int(h, 16) for h in hexes]


def save_result(result):
    path = os.environ.get("MIXPIM_RESULT")
    if path:
        with open(path, "w") as f:
            json.dump(result, f)


async def start(dut, cycles=2):
    """Start a 10 ns clock on ``clk`` and hold ``rst`` for ``cycles`` cycles."""
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    dut.rst.value = 0

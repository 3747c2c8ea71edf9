"""Toolchain discovery, Verilog generation, cocotb/Verilator co-simulation, synthesis and the CLI."""

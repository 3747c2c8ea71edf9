"""cocotb test modules run by :mod:`mixpim.sim.cosim` (this directory is their ``test_dir``).

Each module reads its case (stimulus and golden expectations) from the ``.npz`` file named by
``MIXPIM_CASE`` and writes what it measured as JSON to ``MIXPIM_RESULT``.
"""

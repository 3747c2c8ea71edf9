"""The executable specification of mixpim: numerics, configuration, golden models, cycle models.

Everything in :mod:`mixpim.hw`, :mod:`mixpim.compiler` and :mod:`mixpim.sim` derives widths, tables
and timing from here; nothing in this package imports them.
"""

"""What the tile's units share: each is built from one :class:`~mixpim.models.config.TileConfig`."""

from functools import reduce

from amaranth.hdl import Const
from amaranth.lib import wiring

from ..models.config import TileConfig

__all__ = ["any_of", "check_config", "ConfigComponent"]


def any_of(values):
    """The OR of 1-bit Values (``Const(0, 1)`` for none)."""
    return reduce(lambda a, b: a | b, values, Const(0, 1))


def check_config(config):
    """``config`` itself; :class:`TypeError` if it is not a TileConfig."""
    if not isinstance(config, TileConfig):
        raise TypeError(f"config must be a TileConfig, not {config!r}")
    return config


class ConfigComponent(wiring.Component):
    """A component built from one TileConfig, kept as :attr:`config`.

    A subclass gives its signature members as :meth:`_members`, which is called only once the
    config is known to be a TileConfig.

    Arguments
    ---------
    config : TileConfig

    Raises
    ------
    TypeError
        If ``config`` is not a TileConfig.
    """

    def __init__(self, config):
        self._cfg = check_config(config)
        super().__init__(self._members(config))

    def _members(self, config):
        """The dict of signature members (``In``/``Out`` by name) of a component for ``config``."""
        raise NotImplementedError

    @property
    def config(self):
        return self._cfg

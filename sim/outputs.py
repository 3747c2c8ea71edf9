"""Writing command outputs safely (every ``mixpim`` command that writes files goes through here).

* A file is written to a temporary name in its own folder (``.<name>.<random>.tmp``), flushed,
  and renamed over the destination with :func:`os.replace`. A command that fails or is
  interrupted (an exception, Ctrl-C) removes its temporary files: it leaves neither a partial
  output nor a destroyed previous one. :func:`write_files` writes several files as one batch: all
  temporaries first, then the renames, so a failure while writing replaces none of them.
* A destination that cannot be a regular output file is refused up front with
  :class:`OutputError`, a :class:`~mixpim.models.errors.MixpimError`: an existing folder, a
  device such as ``/dev/null``, a pipe, a place that cannot be written (``/proc``, a read-only
  or permission-protected folder).
* An output folder is checked before a command starts its work (:func:`check_output_dir`) and
  created only when the outputs are written. Only the files a command writes are replaced; other
  files in the folder are left alone, and :func:`write_files` says in one line which existing
  files it replaces (docs/decisions.md, "CLI errors and outputs").
"""

import errno
import os
import stat
import sys
import tempfile
from pathlib import Path

from ..models.errors import MixpimError

__all__ = ["OutputError", "check_output_file", "check_output_dir", "check_outputs", "atomic_write", "write_files",
           "existing_outputs"]


class OutputError(MixpimError, ValueError):
    """An output path cannot be written."""


def _reason(e):
    return e.strerror or str(e)


def _stat(p, what):
    try:
        return os.stat(p)  # follows a symlink to what it names
    except FileNotFoundError:
        return None
    except OSError as e:  # ENOTDIR (a file used as a folder), EACCES, ELOOP ...
        why = "a file on its path is not a folder" if e.errno == errno.ENOTDIR else _reason(e)
        raise OutputError(f"cannot write {what} {str(p)!r}: {why}") from None


def _nonempty(path, what):
    if str(path) == "":
        raise OutputError(f"the {what} path is empty")
    return Path(path)


def check_output_file(path, what="output file"):
    """``path`` as a :class:`~pathlib.Path` if it can become a regular output file.

    Raises :class:`OutputError` if it is an existing folder, not a regular file (a device such as
    ``/dev/null``, a pipe, a socket), or if its folder is an existing non-folder. Whether the folder
    can be written is found out when writing (:func:`atomic_write`).
    """
    p = _nonempty(path, what)
    st = _stat(p, what)
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise OutputError(f"cannot write {what} {str(p)!r}: it is a folder")
        if not stat.S_ISREG(st.st_mode):
            raise OutputError(f"cannot write {what} {str(p)!r}: it is not a regular file (a device, "
                              f"pipe or socket)")
    parent = _stat(p.parent, what)
    if parent is not None and not stat.S_ISDIR(parent.st_mode):
        raise OutputError(f"cannot write {what} {str(p)!r}: {str(p.parent)!r} is not a folder")
    return p


def check_output_dir(path, what="output folder"):
    """``path`` as a :class:`~pathlib.Path` if it is, or can be created as, a writable folder.

    Nothing is created or changed: an existing folder is probed with a temporary file, a missing
    one by creating (and removing) a temporary folder in its nearest existing ancestor. Raises
    :class:`OutputError` if ``path`` is an existing file (or other non-folder), or if the folder
    cannot be written or created.
    """
    p = _nonempty(path, what)
    st = _stat(p, what)
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{what} {str(p)!r} is an existing file, not a folder")
    try:
        if st is not None:
            fd, probe = tempfile.mkstemp(dir=p, prefix=".mixpim-probe-")
            os.close(fd)
            os.unlink(probe)
        else:
            base = p.absolute().parent
            while _stat(base, what) is None:
                base = base.parent
            if not base.is_dir():
                raise OutputError(f"cannot create {what} {str(p)!r}: {str(base)!r} is not a folder")
            os.rmdir(tempfile.mkdtemp(dir=base, prefix=".mixpim-probe-"))
    except OSError as e:
        verb = "write into" if st is not None else "create"
        raise OutputError(f"cannot {verb} {what} {str(p)!r}: {_reason(e)}") from None
    return p


def check_outputs(folder, names):
    """``folder`` as a :class:`~pathlib.Path` once it passes :func:`check_output_dir` and each file
    ``names`` names in it passes :func:`check_output_file`: the check a command makes before its
    work, so a bad destination fails fast."""
    out = check_output_dir(folder)
    for name in names:
        check_output_file(out / name)
    return out


def _mode_for(target):
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _write_temp(target, data, what):
    """Write ``data`` to a new temporary file next to ``target``; return its path."""
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as e:
        raise OutputError(f"cannot write {what} {str(target)!r}: {_reason(e)}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode("utf-8") if isinstance(data, str) else bytes(data))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(target))
    except BaseException as e:
        _unlink(tmp)
        if isinstance(e, OSError):
            raise OutputError(f"cannot write {what} {str(target)!r}: {_reason(e)}") from None
        raise
    return tmp


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _target(p):
    # a symlink keeps pointing where it did: the file it names is replaced
    return Path(os.path.realpath(p)) if p.is_symlink() else p


def _write_all(items, what, mkdir):
    items = [(check_output_file(path, what), data) for path, data in items]
    seen = {}
    for p, _ in items:
        key = os.path.realpath(p)
        if key in seen:
            raise OutputError(f"two outputs would be written to the same file {str(p)!r}")
        seen[key] = p
    if mkdir:
        for p, _ in items:
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise OutputError(f"cannot create folder {str(p.parent)!r} for {what} "
                                  f"{str(p)!r}: {_reason(e)}") from None
    temps = []
    try:
        for p, data in items:
            temps.append((_write_temp(_target(p), data, what), p))
        while temps:
            tmp, p = temps[0]
            try:
                os.replace(tmp, _target(p))
            except OSError as e:
                raise OutputError(f"cannot write {what} {str(p)!r}: {_reason(e)}") from None
            temps.pop(0)
    finally:
        for tmp, _ in temps:
            _unlink(tmp)
    return [p for p, _ in items]


def atomic_write(path, data, *, what="output file", mkdir=False):
    """Write ``data`` to ``path`` atomically; return the path.

    ``data`` is ``bytes``, a ``str`` (written as UTF-8) or a callable that writes into the binary
    file object it is given. ``mkdir`` creates missing parent folders. Raises
    :class:`OutputError` for a destination :func:`check_output_file` refuses or that cannot be
    written; the destination is then unchanged.
    """
    return _write_all([(path, data)], what, mkdir)[0]


def existing_outputs(folder, names):
    """The ``names`` (relative to ``folder``) that already exist there, in order."""
    folder = Path(folder)
    return [n for n in names if os.path.lexists(folder / n)]


def _say_stderr(line):
    print(line, file=sys.stderr)


def write_files(folder, files, *, say=_say_stderr, what="output file"):
    """Write ``files`` (relative name -> data as for :func:`atomic_write`) into ``folder`` as one batch.

    The folder (and any sub-folder a name has) is created if missing. If some of the files exist
    already, ``say`` gets one line naming them (``None``: silent). Returns name -> path.
    """
    folder = check_output_dir(folder)
    replaced = existing_outputs(folder, files)
    paths = _write_all([(folder / name, data) for name, data in files.items()], what, mkdir=True)
    if replaced and say is not None:
        say(f"mixpim: replaced {', '.join(replaced)} in {folder}")
    return dict(zip(files, paths))

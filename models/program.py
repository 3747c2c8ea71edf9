"""Programs for the tile: the versioned program file, the assembler, the disassembler and listings.

A :class:`Program` is a :class:`~mixpim.models.config.TileConfig`, a sequence of
:class:`~mixpim.models.isa.Instruction`, memory-image :class:`Segment` s and optional debug
information (symbols, per-instruction comments). It round-trips exactly through
:meth:`Program.to_bytes` / :meth:`Program.from_bytes`; the file format is specified byte by byte in
docs/isa.md. Loading never trusts the file: every inconsistency raises :class:`ProgramError` naming
the problem.
"""

import json
import os
import stat
import struct
import tempfile
import zlib
from dataclasses import dataclass, field

from .config import TileConfig
from .errors import ConfigError, MixpimError, parse_problem
from .isa import (WORD_BYTES, DecodeError, Instruction, IsaError, Opcode, Spad, decode, format_of,
                  parse_instruction)

__all__ = ["MAGIC", "FORMAT_VERSION", "HEADER_BYTES", "DRAM_BYTES", "SPAD_WORDS",
           "ProgramError", "AssemblyError", "Segment", "Program",
           "assemble", "disassemble", "listing"]

MAGIC = b"MXPM"
FORMAT_VERSION = 1

#: magic, version, flags (reserved, 0), body length, CRC-32 of the body.
_HEADER = struct.Struct("<4sHHII")
HEADER_BYTES = _HEADER.size
#: target (0xff = DRAM, else the SPAD id), reserved (0), word_bytes, base, data length.
_SEGMENT = struct.Struct("<BBHII")
_U32 = struct.Struct("<I")
_DRAM_CODE = 0xFF

#: Bytes of DRAM an instruction can address (the reach of the 32-bit ``dram_addr`` field).
DRAM_BYTES = 1 << format_of(Opcode.LOAD).field("dram_addr").width
#: Words of a scratchpad an instruction can address (the reach of the 16-bit ``spad_addr`` field).
SPAD_WORDS = 1 << format_of(Opcode.LOAD).field("spad_addr").width
_MAX_WORD_BYTES = 0xFFFF


class ProgramError(MixpimError, ValueError):
    """A program (object, file or assembly text) is malformed."""


class AssemblyError(ProgramError):
    """An assembly line does not assemble.

    Members
    -------
    line : int
        The 1-based line number (also at the start of the message).
    """

    def __init__(self, message, line):
        super().__init__(message)
        self.line = line


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


# -- segments ----------------------------------------------------------------------------------

_TARGETS = ("dram",) + tuple(s.name for s in Spad)


@dataclass(frozen=True)
class Segment:
    """Initial contents of part of DRAM or of a scratchpad.

    Arguments
    ---------
    target : str or Spad
        ``"dram"`` or a scratchpad (``"ACT"``, ``Spad.ACT``, ...); stored as the string.
    base : int
        First address: a byte address in DRAM, a word address in a scratchpad.
    data : bytes
        The contents, non-empty. For a scratchpad, ``len(data) // word_bytes`` whole words, each
        ``word_bytes`` bytes, little-endian (the executor checks ``word_bytes`` against the
        configuration's word size).
    word_bytes : int
        1 for DRAM (byte addressed); the scratchpad's word size in bytes, 1..65535, otherwise.

    Raises
    ------
    ProgramError
        If an argument is invalid or the segment leaves the address space an instruction can
        reach (:data:`DRAM_BYTES` bytes, :data:`SPAD_WORDS` words).
    """
    target: str
    base: int
    data: bytes
    word_bytes: int = 1

    def __post_init__(self):
        target = self.target.name if isinstance(self.target, Spad) else self.target
        if target not in _TARGETS:
            raise ProgramError(f"segment target must be one of {', '.join(_TARGETS)}, not {self.target!r}")
        object.__setattr__(self, "target", target)
        if not isinstance(self.data, (bytes, bytearray, memoryview)):
            raise ProgramError(f"segment data must be bytes, not {type(self.data).__name__}")
        object.__setattr__(self, "data", bytes(self.data))
        if not self.data:
            raise ProgramError("segment data must not be empty")
        if not _is_int(self.word_bytes) or not 1 <= self.word_bytes <= _MAX_WORD_BYTES:
            raise ProgramError(f"segment word_bytes must be an integer in 1..{_MAX_WORD_BYTES}, "
                               f"not {self.word_bytes!r}")
        if target == "dram" and self.word_bytes != 1:
            raise ProgramError(f"a dram segment is byte addressed: word_bytes must be 1, "
                               f"not {self.word_bytes}")
        if len(self.data) % self.word_bytes:
            raise ProgramError(f"segment data ({len(self.data)} bytes) is not a whole number of "
                               f"{self.word_bytes}-byte words")
        if not _is_int(self.base) or self.base < 0:
            raise ProgramError(f"segment base must be a non-negative integer, not {self.base!r}")
        if self.end > self.space:
            unit = "bytes" if target == "dram" else "words"
            raise ProgramError(f"{self._where()} ends at {self._addr(self.end)}, beyond the "
                               f"{self.space} {unit} an instruction can address")

    @property
    def size(self):
        """Length in address units (bytes for DRAM, words for a scratchpad)."""
        return len(self.data) // self.word_bytes

    @property
    def end(self):
        """One past the last address."""
        return self.base + self.size

    @property
    def space(self):
        return DRAM_BYTES if self.target == "dram" else SPAD_WORDS

    def _addr(self, a):
        return f"0x{a:x}" if self.target == "dram" else str(a)

    def _where(self):
        unit = "bytes" if self.target == "dram" else "words"
        return (f"segment {self.target} {self._addr(self.base)}..{self._addr(self.end - 1)} "
                f"({self.size} {unit})")


# -- programs ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Program:
    """An executable program for one tile configuration.

    Arguments
    ---------
    config : TileConfig
    instructions : sequence of Instruction
        Stored as a tuple; instruction ``pc`` is ``instructions[pc]``.
    segments : sequence of Segment
        Initial memory contents; segments of one target must not overlap, and segments of one
        scratchpad must agree on ``word_bytes``.
    symbols : dict[str, int]
        Optional names of addresses (e.g. where the compiler placed a tensor), for listings.
    comments : dict[int, str]
        Optional one-line comment per instruction index, for listings.

    Raises
    ------
    ProgramError
        If an argument is invalid; the message names it.
    """
    config: TileConfig
    instructions: tuple
    segments: tuple = ()
    symbols: dict = field(default_factory=dict)
    comments: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.config, TileConfig):
            raise ProgramError(f"config must be a TileConfig, not {type(self.config).__name__}")
        for name, kind, article in (("instructions", Instruction, "an"), ("segments", Segment, "a")):
            items = getattr(self, name)
            if isinstance(items, (str, bytes)) or not hasattr(items, "__iter__"):
                raise ProgramError(f"{name} must be a sequence of {kind.__name__}, not "
                                   f"{type(items).__name__}")
            items = tuple(items)
            for i, item in enumerate(items):
                if not isinstance(item, kind):
                    raise ProgramError(f"{name}[{i}] must be {article} {kind.__name__}, not {item!r}")
            object.__setattr__(self, name, items)
        self._check_segments()
        if not isinstance(self.symbols, dict):
            raise ProgramError(f"symbols must be a dict, not {type(self.symbols).__name__}")
        for name, value in self.symbols.items():
            if not isinstance(name, str) or not name or any(c.isspace() for c in name):
                raise ProgramError(f"symbol names must be non-empty strings without whitespace, "
                                   f"not {name!r}")
            if not _is_int(value) or not 0 <= value < 1 << 64:
                raise ProgramError(f"symbol {name} must be an integer in 0..2**64-1, not {value!r}")
        if not isinstance(self.comments, dict):
            raise ProgramError(f"comments must be a dict, not {type(self.comments).__name__}")
        for pc, text in self.comments.items():
            if not _is_int(pc) or not 0 <= pc < len(self.instructions):
                raise ProgramError(f"comment index must be an instruction index in "
                                   f"0..{len(self.instructions) - 1}, not {pc!r}")
            if not isinstance(text, str) or "\n" in text or "\r" in text:
                raise ProgramError(f"comment {pc} must be a one-line string, not {text!r}")
        object.__setattr__(self, "symbols", dict(self.symbols))
        object.__setattr__(self, "comments", dict(sorted(self.comments.items())))

    def _check_segments(self):
        by_target = {}
        for i, seg in enumerate(self.segments):
            by_target.setdefault(seg.target, []).append((seg.base, i, seg))
        for target, segs in by_target.items():
            _, j, first = segs[0]
            for _, i, seg in segs:
                if seg.word_bytes != first.word_bytes:
                    raise ProgramError(f"segments {j} and {i} give {target} different word sizes "
                                       f"({first.word_bytes} and {seg.word_bytes} bytes)")
            segs.sort(key=lambda t: t[:2])
            for (_, i, a), (_, j, b) in zip(segs, segs[1:]):
                if b.base < a.end:
                    lo, hi = b.base, min(a.end, b.end) - 1
                    i, j = min(i, j), max(i, j)
                    raise ProgramError(f"segments {i} and {j} overlap in {target} at "
                                       f"{a._addr(lo)}..{a._addr(hi)}")

    # -- the file ------------------------------------------------------------------------------

    def to_bytes(self):
        """The program file's contents (format in docs/isa.md)."""
        body = bytearray()
        config = self.config.to_json().encode("utf-8")
        body += _U32.pack(len(config)) + config
        body += _U32.pack(len(self.instructions))
        for inst in self.instructions:
            body += inst.encode().to_bytes(WORD_BYTES, "little")
        body += _U32.pack(len(self.segments))
        for seg in self.segments:
            code = _DRAM_CODE if seg.target == "dram" else Spad[seg.target]
            body += _SEGMENT.pack(code, 0, seg.word_bytes, seg.base, len(seg.data)) + seg.data
        debug = b""
        if self.symbols or self.comments:
            debug = json.dumps({"symbols": self.symbols,
                                "comments": {str(k): v for k, v in self.comments.items()}},
                               sort_keys=True).encode("utf-8")
        body += _U32.pack(len(debug)) + debug
        header = _HEADER.pack(MAGIC, FORMAT_VERSION, 0, len(body), zlib.crc32(body))
        return header + bytes(body)

    @classmethod
    def from_bytes(cls, data):
        """Parse a program file's contents.

        Raises
        ------
        ProgramError
            Wrong magic, unsupported version, truncated or oversized file, checksum mismatch,
            invalid configuration, a segment out of bounds or overlapping another, an instruction
            that does not decode (with its index), or any other inconsistency.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ProgramError(f"a program file must be bytes, not {type(data).__name__}")
        data = bytes(data)
        prefix = data[:len(MAGIC)]
        if prefix != MAGIC[:len(prefix)]:
            raise ProgramError(f"not a mixpim program file: it starts with {prefix!r}, not {MAGIC!r}")
        if len(data) >= 6:
            version = int.from_bytes(data[4:6], "little")
            if version != FORMAT_VERSION:
                raise ProgramError(f"unsupported program format version {version}; this mixpim "
                                   f"reads version {FORMAT_VERSION}")
        if len(data) < HEADER_BYTES:
            raise ProgramError(f"truncated program file: the header needs {HEADER_BYTES} bytes, "
                               f"the file has {len(data)}")
        _, _, flags, length, crc = _HEADER.unpack_from(data)
        if flags:
            raise ProgramError(f"program file header flags must be 0, not 0x{flags:04x}")
        body = data[HEADER_BYTES:]
        if len(body) < length:
            raise ProgramError(f"truncated program file: the header announces {length} body "
                               f"bytes, the file has {len(body)}")
        if len(body) > length:
            raise ProgramError(f"program file has {len(body) - length} unexpected bytes after its "
                               f"{length}-byte body")
        actual = zlib.crc32(body)
        if actual != crc:
            raise ProgramError(f"program file checksum mismatch: the header says 0x{crc:08x}, the "
                               f"body's CRC-32 is 0x{actual:08x} (the file is corrupt)")
        return cls._parse_body(body)

    @classmethod
    def _parse_body(cls, body):
        reader = _Reader(body)
        config_text = reader.take(reader.u32("configuration length"), "configuration")
        try:
            config = TileConfig.from_json(config_text.decode("utf-8"))
        except UnicodeDecodeError:
            raise ProgramError("invalid configuration in program file: not UTF-8") from None
        except ConfigError as e:
            raise ProgramError(f"invalid configuration in program file: {e}") from None
        except TypeError as e:  # a JSON value TileConfig cannot take at all (e.g. a list)
            raise ProgramError(f"invalid configuration in program file: {e}") from None
        count = reader.u32("instruction count")
        words = reader.take(count * WORD_BYTES, f"{count} instructions")
        instructions = []
        for i in range(count):
            word = int.from_bytes(words[i * WORD_BYTES:(i + 1) * WORD_BYTES], "little")
            try:
                instructions.append(decode(word))
            except DecodeError as e:
                raise ProgramError(f"instruction {i} (0x{word:032x}) does not decode: {e} "
                                   f"(error code {e.code.name})") from None
        segments = []
        for i in range(reader.u32("segment count")):
            head = reader.take(_SEGMENT.size, f"segment {i} header")
            code, reserved, word_bytes, base, size = _SEGMENT.unpack(head)
            if code != _DRAM_CODE and code not in Spad._value2member_map_:
                raise ProgramError(f"segment {i}: unknown target code {code}; codes are "
                                   f"{', '.join(f'{int(s)} {s.name}' for s in Spad)}, "
                                   f"{_DRAM_CODE} dram")
            if reserved:
                raise ProgramError(f"segment {i}: reserved byte must be 0, not {reserved}")
            target = "dram" if code == _DRAM_CODE else Spad(code).name
            seg_data = reader.take(size, f"segment {i} data")
            try:
                segments.append(Segment(target, base, seg_data, word_bytes))
            except ProgramError as e:
                raise ProgramError(f"segment {i}: {e}") from None
        debug = reader.take(reader.u32("debug length"), "debug section")
        if reader.left:
            raise ProgramError(f"malformed program body: {reader.left} unexpected bytes after the "
                               f"debug section")
        symbols, comments = {}, {}
        if debug:
            try:
                info = json.loads(debug.decode("utf-8"))
                if not isinstance(info, dict) or set(info) != {"symbols", "comments"}:
                    raise ValueError("expected an object with keys comments and symbols")
                symbols = info["symbols"]
                comments = {int(k): v for k, v in info["comments"].items()}
                # a nested value could be too deep for the messages' repr: name its type only
                for what, table in (("symbol", symbols), ("comment", comments)):
                    for key, value in (table.items() if isinstance(table, dict) else ()):
                        if isinstance(value, (list, dict)):
                            kind = "an integer in 0..2**64-1" if what == "symbol" else "a one-line string"
                            raise ValueError(f"{what} {str(key)[:40]} must be {kind}, not a "
                                             f"{type(value).__name__}")
            except UnicodeDecodeError:
                raise ProgramError("malformed program debug section: not UTF-8") from None
            except (RecursionError, ValueError, AttributeError, TypeError) as e:
                raise ProgramError(f"malformed program debug section: {parse_problem(e)}") from None
        return cls(config, instructions, segments, symbols, comments)

    def save(self, path):
        """Write the program file to ``path`` atomically: a temporary file in the same folder, then
        :func:`os.replace`, so a failure leaves any previous file at ``path`` untouched.

        Raises :class:`ProgramError` if ``path`` is a folder, a device (such as ``/dev/null``) or
        cannot be written."""
        data = self.to_bytes()
        name = str(path)
        try:
            st = os.stat(name)
        except FileNotFoundError:
            st = None
        except OSError as e:
            raise ProgramError(f"cannot write program {name!r}: {e.strerror}") from None
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise ProgramError(f"cannot write program {name!r}: Is a directory")
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise ProgramError(f"cannot write program {name!r}: not a regular file (a device, pipe "
                               f"or socket)")
        target = os.path.realpath(name) if os.path.islink(name) else name
        folder, base = os.path.split(os.path.abspath(target))
        try:
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{base}.", suffix=".tmp")
        except OSError as e:
            raise ProgramError(f"cannot write program {name!r}: {e.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            if st is not None:
                mode = stat.S_IMODE(st.st_mode)
            else:
                umask = os.umask(0)
                os.umask(umask)
                mode = 0o666 & ~umask
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        except BaseException as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            if isinstance(e, OSError):
                raise ProgramError(f"cannot write program {name!r}: {e.strerror or e}") from None
            raise

    @classmethod
    def load(cls, path):
        """Read a program file (see :meth:`from_bytes` for the errors; a folder or a device such as
        ``/dev/zero`` is a :class:`ProgramError` too)."""
        name = str(path)
        try:
            with open(path, "rb") as f:
                mode = os.fstat(f.fileno()).st_mode
                if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                    raise ProgramError(f"cannot read program {name!r}: it is a device, not a file")
                data = f.read()
        except OSError as e:
            raise ProgramError(f"cannot read program {name!r}: {e.strerror or e}") from None
        except MemoryError:
            raise ProgramError(f"cannot read program {name!r}: not enough memory") from None
        return cls.from_bytes(data)


class _Reader:
    def __init__(self, data):
        self.data = data
        self.at = 0

    @property
    def left(self):
        return len(self.data) - self.at

    def take(self, n, what):
        if n > self.left:
            raise ProgramError(f"malformed program body: the {what} need(s) {n} bytes at body "
                               f"offset {self.at}, only {self.left} left")
        chunk = self.data[self.at:self.at + n]
        self.at += n
        return chunk

    def u32(self, what):
        return _U32.unpack(self.take(_U32.size, what))[0]


# -- assembly ----------------------------------------------------------------------------------

def assemble(text):
    """The instructions written in assembly ``text`` (syntax: docs/isa.md, "Assembly syntax").

    Raises
    ------
    AssemblyError
        Naming the line number and the problem.
    """
    if not isinstance(text, str):
        raise ProgramError(f"assembly must be a string, not {type(text).__name__}")
    instructions = []
    for number, line in enumerate(text.splitlines(), 1):
        code = line.split("#", 1)[0]
        if not code.strip():
            continue
        try:
            instructions.append(parse_instruction(code))
        except IsaError as e:
            raise AssemblyError(f"line {number}: {e}", number) from None
    return instructions


def disassemble(instructions):
    """Canonical assembly of ``instructions``, one per line; :func:`assemble` inverts it exactly."""
    lines = []
    for i, inst in enumerate(instructions):
        if not isinstance(inst, Instruction):
            raise ProgramError(f"instructions[{i}] must be an Instruction, not {inst!r}")
        lines.append(str(inst))
    return "".join(line + "\n" for line in lines)


def listing(program):
    """A readable listing of ``program``: header comments, then ``pc  word  assembly  # comment``."""
    if not isinstance(program, Program):
        raise ProgramError(f"listing needs a Program, not {type(program).__name__}")
    n = len(program.instructions)
    config = json.dumps(program.config.to_dict(), sort_keys=True)
    out = [f"# mixpim program (format version {FORMAT_VERSION}): {n} instruction{'s' * (n != 1)}, "
           f"{len(program.segments)} segment{'s' * (len(program.segments) != 1)}",
           f"# config {config}"]
    for i, seg in enumerate(program.segments):
        out.append(f"# segment {i}: {seg._where()[len('segment '):]}"
                   + (f", {seg.word_bytes}-byte words" if seg.target != "dram" else ""))
    for name, value in sorted(program.symbols.items()):
        out.append(f"# symbol {name} = 0x{value:x}")
    out.append(f"# {'pc':>5}  {'word':<32}  assembly")
    for pc, inst in enumerate(program.instructions):
        line = f"{pc:7d}  {inst.encode():032x}  {inst}"
        if pc in program.comments:
            line += f"  # {program.comments[pc]}"
        out.append(line)
    return "\n".join(out) + "\n"

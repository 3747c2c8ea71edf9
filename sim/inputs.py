"""Small text inputs read by the commands (a batch file of prompts, a request trace): whole,
bounded, UTF-8, with one-line errors naming the file."""

from mixpim.models.errors import MixpimError

__all__ = ["InputError", "TEXT_INPUT_MAX", "read_text_input"]

#: Largest text input, in bytes.
TEXT_INPUT_MAX = 1 << 20


class InputError(MixpimError, ValueError):
    """An input file cannot be read, or is not what it should be."""


def read_text_input(path, what):
    """The text of ``path`` (``what``: "batch file", "trace", ... for the messages)."""
    try:
        with open(path, "rb") as f:
            data = f.read(TEXT_INPUT_MAX + 1)
    except OSError as e:
        raise InputError(f"cannot read {what} {str(path)!r}: {e.strerror or e}") from None
    if len(data) > TEXT_INPUT_MAX:
        raise InputError(f"{what} {str(path)!r} is larger than {TEXT_INPUT_MAX} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{what} {str(path)!r} is not UTF-8 (byte {e.start})") from None

"""Request traces for batched-decode workloads: the sequence length of each request.

A trace is a CSV file with a ``seq_len`` column (other columns, such as a channel, are allowed
and ignored by name only); every value an integer in 1..:data:`MAX_SEQ_LEN`. The kit ships
:data:`DEFAULT_TRACE`, 512 request lengths derived from ShareGPT conversations (1..2048 tokens,
mean 299.9), the kind of trace NeuPIMs evaluates with."""

import csv
import io
from pathlib import Path

from .inputs import InputError, read_text_input

__all__ = ["MAX_SEQ_LEN", "DEFAULT_TRACE", "load_trace", "batch_lengths"]

#: Longest request a trace may hold.
MAX_SEQ_LEN = 1 << 20
#: The shipped trace: 512 ShareGPT-derived request lengths.
DEFAULT_TRACE = Path(__file__).parent / "data" / "sharegpt_seq_lens_512.csv"


def load_trace(path=DEFAULT_TRACE):
    """The request lengths of the trace ``path`` (a tuple of int, in file order)."""
    where = str(path)
    text = read_text_input(path, "trace")
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as e:
        raise InputError(f"trace {where!r} is not CSV: {e}") from None
    if not rows:
        raise InputError(f"trace {where!r} is empty (it needs a header with a seq_len column)")
    header = [h.strip() for h in rows[0]]
    if "seq_len" not in header:
        raise InputError(f"trace {where!r} has no seq_len column (header: {','.join(header)!r})")
    col = header.index("seq_len")
    lengths = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue  # a blank line
        cell = row[col].strip() if col < len(row) else ""
        if not cell.isdigit() or not 1 <= int(cell) <= MAX_SEQ_LEN:
            raise InputError(f"trace {where!r} line {line}: seq_len must be an integer in "
                             f"1..{MAX_SEQ_LEN}, not {cell!r}")
        lengths.append(int(cell))
    if not lengths:
        raise InputError(f"trace {where!r} holds no requests")
    return tuple(lengths)


def batch_lengths(trace, batch):
    """The first ``batch`` requests' lengths of ``trace`` (a tuple of lengths)."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InputError(f"batch must be a positive integer, not {batch!r}")
    if batch > len(trace):
        raise InputError(f"a batch of {batch} needs {batch} requests; the trace holds {len(trace)}")
    return tuple(trace[:batch])

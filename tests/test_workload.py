"""Request traces (sim/workload.py) and the bounded text inputs behind them (sim/inputs.py)."""

import pytest

from mixpim.sim.inputs import TEXT_INPUT_MAX, InputError, read_text_input
from mixpim.sim.workload import DEFAULT_TRACE, MAX_SEQ_LEN, batch_lengths, load_trace


def test_the_shipped_sharegpt_trace():
    t = load_trace()
    assert len(t) == 512 and min(t) == 1 and max(t) == 2048 and sum(t) == 153_548
    assert t[:4] == (2048, 2048, 1004, 942) and load_trace(DEFAULT_TRACE) == t
    assert batch_lengths(t, 256) == t[:256] and len(batch_lengths(t, 512)) == 512


def test_traces_with_more_columns_and_blank_lines(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("channel, seq_len\n0, 5\n\n1,17\n")
    assert load_trace(p) == (5, 17)


@pytest.mark.parametrize("text, problem", [
    ("", "is empty (it needs a header with a seq_len column)"),
    ("length\n5\n", "has no seq_len column (header: 'length')"),
    ("seq_len\n", "holds no requests"),
    ("seq_len\n5\n0\n", "line 3: seq_len must be an integer in 1..1048576, not '0'"),
    ("seq_len\n5\n-3\n", "line 3: seq_len must be an integer in 1..1048576, not '-3'"),
    ("seq_len\n2.5\n", "line 2: seq_len must be an integer in 1..1048576, not '2.5'"),
    (f"seq_len\n{MAX_SEQ_LEN + 1}\n", f"line 2: seq_len must be an integer in 1..1048576, not '{MAX_SEQ_LEN + 1}'"),
    ("a,seq_len\n1\n", "line 2: seq_len must be an integer in 1..1048576, not ''"),
])
def test_bad_traces(tmp_path, text, problem):
    p = tmp_path / "t.csv"
    p.write_text(text)
    with pytest.raises(InputError) as e:
        load_trace(p)
    assert str(e.value) == f"trace {str(p)!r} {problem}"


def test_unreadable_inputs(tmp_path):
    big, binary = tmp_path / "big.csv", tmp_path / "bin.csv"
    big.write_bytes(b"seq_len\n" + b"1\n" * TEXT_INPUT_MAX)
    binary.write_bytes(b"seq_len\n\xff\n")
    for path, msg in ((tmp_path / "none.csv", "cannot read trace {!r}: No such file or directory"),
                      (tmp_path, "cannot read trace {!r}: Is a directory"),
                      (big, "trace {!r} is larger than 1048576 bytes"),
                      (binary, "trace {!r} is not UTF-8 (byte 8)")):
        with pytest.raises(InputError) as e:
            read_text_input(path, "trace")
        assert str(e.value) == msg.format(str(path))
    t = load_trace()
    for batch, msg in ((513, "a batch of 513 needs 513 requests; the trace holds 512"),
                       (0, "batch must be a positive integer, not 0"), (True, "batch must be a positive integer, not True")):
        with pytest.raises(InputError, match=msg):
            batch_lengths(t, batch)

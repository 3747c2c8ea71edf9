"""Memos of pure functions of a configuration and an instruction, kept across programs.

A compiler's programs repeat most of their instructions (a decode step repeats every Linear of
the step before), so the facts derived from one instruction (its dispatch facts in the cycle
model, its footprint in the token pass) are worth keeping from one program to the next. The
memo of one ``store`` is a dict per configuration; it starts again when it grows too large."""

__all__ = ["MEMO_ENTRIES", "MEMO_CONFIGS", "config_memo", "remembered"]

#: Entries of one configuration's memo before it is emptied (a SmolLM2 decode step has about
#: 33,000 distinct instruction words).
MEMO_ENTRIES = 1 << 17
#: Configurations one store keeps before it is emptied.
MEMO_CONFIGS = 4


def config_memo(store, config):
    """The memo (a dict) of ``store`` for ``config``."""
    memo = store.get(config)
    if memo is None:
        if len(store) >= MEMO_CONFIGS:
            store.clear()
        memo = store[config] = {}
    elif len(memo) >= MEMO_ENTRIES:
        memo.clear()
    return memo


def remembered(memo, inst, make):
    """``make()``, the fact of the Instruction ``inst``, kept in ``memo`` (a :func:`config_memo`)
    with the instruction's format: equal instructions of another format object (a test may swap
    the format table) are made again."""
    known = memo.get(inst)
    if known is None or known[0] is not inst.format:
        known = memo[inst] = (inst.format, make())
    return known[1]

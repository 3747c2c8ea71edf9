"""Tuning a Linear layer's plan on the cycle model.

The cost model (:func:`~.plan.plan_candidates`) ranks the plans that fit; :func:`choose_plan`
schedules the best :data:`TUNE_PLANS` of them (while their estimated instructions stay within
:data:`TUNE_BUDGET`), runs each on the cycle model (:func:`~mixpim.models.tile_timing.simulate`,
exact: golden = RTL) and keeps the fastest. Deterministic; larger layers keep the cost model's
choice (docs/compiler.md, "Tile and plan").
"""

from dataclasses import replace

from mixpim.models.tile_timing import simulate

from .emit import CompileError, Emitter
from .plan import plan_candidates
from .schedule import Schedule

__all__ = ["TUNE_PLANS", "TUNE_BUDGET", "instructions_estimate", "choose_plan"]

#: Tuning: at most this many plans (the cost model's best) are scheduled and run on the cycle
#: model, while their estimated instructions stay within the budget; the fastest wins.
TUNE_PLANS = 6
TUNE_BUDGET = 12000


def instructions_estimate(lay, plan):
    """A rough upper estimate of the instructions of layer ``lay`` under ``plan`` (GEMMs, piece
    loads, outputs and the start's segmented loads)."""
    nc = -(-lay.groups // plan.gc)
    n_i, n_j = -(-lay.mb // plan.bm), -(-lay.nb // plan.bn)
    outs = lay.mb * lay.nb * (2 if lay.out == "int8" else 1)
    return lay.mb * lay.nb * nc + 3 * n_i * n_j * nc + outs + 4 * (plan.bm + plan.bn) * max(
        1, lay.groups.bit_length()) + 8


def choose_plan(lay, per_token, act_base, vec_func, *, tune=True, order="auto", chunk_groups=None,
                block=None):
    """The plan of the placed layer ``lay``: the cost model ranks the plans that fit
    (:func:`~.plan.plan_candidates`); with ``tune``, the best :data:`TUNE_PLANS` of them (within
    :data:`TUNE_BUDGET` estimated instructions) are scheduled and run on the cycle model, and the
    one with the fewest cycles is taken. ``order``, ``chunk_groups`` and ``block`` pin those
    choices."""
    cfg = lay.config
    cands = plan_candidates(cfg, lay.m, lay.n, lay.k, out=lay.out, per_token=per_token,
                            order=order, chunk_groups=chunk_groups, block=block, act_base=act_base)
    if not tune or len(cands) == 1:
        return cands[0]
    best, spent = None, 0
    for plan in cands[:TUNE_PLANS]:
        spent += instructions_estimate(lay, plan)
        if spent > TUNE_BUDGET:
            break
        em = Emitter(cfg)
        try:
            Schedule(em, replace(lay, plan=plan), plan, per_token, act_base, vec_func).run()
        except CompileError:
            continue
        t = simulate(cfg, em.instructions())
        if t.ok and (best is None or t.cycles < best[0]):
            best = (t.cycles, plan)
    return cands[0] if best is None else best[1]

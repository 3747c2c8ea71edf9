"""A BERT encoder (all-MiniLM-L6-v2) as one tile program: calibration, quantization and lowering
(docs/compiler.md, "Whole models").

Numbers (docs/decisions.md, "Whole models"): weights W4 group-wise (the tile's group, asymmetric),
activations FP16 into every projection; the residual stream 32-bit fixed point in ACC words
(``2**-res_frac`` units, from the calibrated range); keys and values INT8 with static per-channel
scales (the key scale and ``1/sqrt(head_dim)`` folded into the query's projection); probabilities
FP16. The host gathers the embeddings (``word + position + type``, a table lookup), puts them in
the residual's units into DRAM, and pools the last residual (mean over tokens, L2 normalisation,
as sentence-transformers does). Everything in between runs on the tile:

    embedding LayerNorm -> per layer: QKV (one Linear) -> epilogue (Q FP16, K INT8, V INT8 direct)
    -> attention (prefill_attention) -> O Linear -> RES + LayerNorm -> up Linear -> GELU epilogue
    -> down Linear -> RES + LayerNorm
"""

import math
from dataclasses import dataclass

import numpy as np

from mixpim.models.isa import VecFunc
from mixpim.models.quant import quantize_weights
from mixpim.models.vec_fixed import FRAC as FIX
from mixpim.models.vector import pack_vparam

from .emit import CompileError
from .model_build import ModelBuild, int32_words
from .model_kernels import (NormParams, Regions, TileOut, epilogue, linear_acc, norm_words, pack_linear,
                            residual_image, residual_units,
                            residual_norm, start_program, acc_multipliers, param_blocks)
from .nibble_planes import PLANES, quantize_planes
from .prefill_attention import context_words, prefill_attention, soft_words

__all__ = ["LINEARS", "BertCalibration", "calibrate_bert", "BertCompiler", "CompiledBert"]

#: The Linear layers of a block, in order (the query, key and value projections are one).
LINEARS = ("qkv", "o", "up", "down")


@dataclass(frozen=True)
class BertCalibration:
    """Static scales of a BERT encoder: ``res_frac`` (the residual's unit ``2**-res_frac``),
    ``qshift`` (the norms' shift of ``x - mean``), ``k_scale`` / ``v_scale`` (layers, hidden)
    per-channel INT8 scales of keys and values."""

    res_frac: int
    qshift: int
    k_scale: np.ndarray
    v_scale: np.ndarray


def calibrate_bert(model, id_lists):
    """:class:`BertCalibration` from float runs of ``model`` (:class:`~.bert_float.BertFloat`) over
    the token id sequences ``id_lists`` (maxima over all tokens: the residual stream everywhere,
    keys and values per channel)."""
    n = model.config.layers
    res, kmax, vmax = 0.0, np.zeros((n, model.config.hidden)), np.zeros((n, model.config.hidden))
    for ids in id_lists:
        tr = {}
        model.forward(ids, trace=tr)
        res = max(res, float(np.abs(tr["embed_ln_in"]).max()))
        for i in range(n):
            p = f"layer{i}."
            for name in ("qkv_in", "ln1_in", "w1_in", "ln2_in"):
                res = max(res, float(np.abs(tr[p + name]).max()))
            kmax[i] = np.maximum(kmax[i], np.abs(tr[p + "k"]).max(0))
            vmax[i] = np.maximum(vmax[i], np.abs(tr[p + "v"]).max(0))
    frac, qshift = residual_units(res)
    return BertCalibration(frac, qshift, np.where(kmax > 0, kmax / 127, 1.0),
                           np.where(vmax > 0, vmax / 127, 1.0))


def _linear_params(cfg, qw, scale, bias):
    """VPARAM image of a Linear's epilogue: column multipliers taking the FP16 accumulators to
    ``1 / scale[n]`` output units, then the biases in those units."""
    return param_blocks(cfg, pack_vparam(*acc_multipliers(qw, scale)), int32_words(np.rint(bias * scale)))


@dataclass(frozen=True)
class _Layer:
    qkv: object
    wo: object
    w1: object
    w2: object
    qkv_params: bytes
    o_params: bytes
    up_params: bytes
    down_params: bytes
    ln1: tuple
    ln2: tuple
    ctx: bytes


@dataclass
class CompiledBert:
    """A compiled encoder run: ``program``; ``out`` the DRAM address of the last residual
    (:class:`~.model_build.ResTensor`); ``tokens``; ``res_frac``."""

    program: object
    out: object
    tokens: int
    res_frac: int

    def hidden(self, result):
        """The last hidden states (tokens, hidden) float64 from an executor result."""
        return self.out.read(self.program.config, result, self.res_frac)


class BertCompiler:
    """Quantizes ``model`` (:class:`~.bert_float.BertFloat`) once for ``config`` (an FP16 square
    tile) with ``calibration`` (:class:`BertCalibration`); :meth:`lower` compiles a sequence."""

    def __init__(self, model, config, calibration, *, planes=LINEARS):
        cfg, mc, cal = ModelBuild.check(config), model.config, calibration
        bad = set(planes) - set(LINEARS)
        if bad:
            raise CompileError(f"planes must name Linears of {', '.join(LINEARS)}, not {sorted(bad)}")
        self.copies = {name: PLANES if name in planes else 1 for name in LINEARS}
        self.model, self.cfg, self.cal = model, cfg, calibration
        self.hidden, self.heads = mc.hidden, mc.heads
        self.head_dim = mc.hidden // mc.heads
        self.reg = Regions.of(cfg, mc.hidden)
        w = model.weights

        def q(m, name):
            if self.copies[name] > 1:
                return quantize_planes(m, cfg.group, cfg.scale_bits)
            return quantize_weights(m, cfg.wbits, cfg.group, scale_bits=cfg.scale_bits)

        def norm(n):
            return norm_words(cfg, mc.hidden, n.weight, n.bias, eps=mc.norm_eps, rms=False,
                              res_frac=cal.res_frac, out_frac=FIX, qshift=cal.qshift)
        self.embed_ln = norm(w.embed_ln)
        self.layers = []
        rs = 2.0 ** cal.res_frac
        for i, lw in enumerate(w.layers):
            qkv = q(np.concatenate([lw.wq, lw.wk, lw.wv]), "qkv")
            qs = cal.k_scale[i] / math.sqrt(self.head_dim) * 2.0 ** FIX
            scale = np.concatenate([qs, 1 / cal.k_scale[i], 1 / cal.v_scale[i]])
            wo, w1, w2 = q(lw.wo, "o"), q(lw.w1, "up"), q(lw.w2, "down")
            self.layers.append(_Layer(
                pack_linear(cfg, qkv), pack_linear(cfg, wo), pack_linear(cfg, w1), pack_linear(cfg, w2),
                _linear_params(cfg, qkv, scale, np.concatenate([lw.bq, lw.bk, lw.bv])),
                _linear_params(cfg, wo, rs, lw.bo), _linear_params(cfg, w1, 2.0 ** FIX, lw.b1),
                _linear_params(cfg, w2, rs, lw.b2), norm(lw.ln1), norm(lw.ln2),
                context_words(cfg, cal.v_scale[i])))

    def _norm(self, b, name, words):
        nparam, act, res = words
        return NormParams(b.region(f"{name}.nparam", len(nparam), 4, nparam),
                          b.region(f"{name}.act", len(act), 4, act),
                          b.region(f"{name}.res", len(res), 4, res), False, self.cal.qshift)

    def lower(self, ids, *, layers=None, tune=True):
        """A :class:`CompiledBert` of the token ids ``ids`` through the first ``layers`` layers
        (default all)."""
        cfg, d = self.cfg, self.hidden
        ids = self.model.check_ids(ids)
        m = len(ids)
        n_layers = len(self.layers) if layers is None else layers
        if not 0 <= n_layers <= len(self.layers):
            raise CompileError(f"layers must be in 0..{len(self.layers)}, not {layers}")
        w = self.model.weights
        emb = w.word[ids] + w.position[:m] + w.token_type[0]
        b = ModelBuild(cfg)
        self.reg.restart()  # a program's instructions depend on its inputs only
        start_program(b)
        res = b.res("embed", m, d, residual_image(cfg, emb, self.cal.res_frac))
        x = b.act("x0", m, d, self.copies["qkv"])
        r0 = b.res("r0", m, d)
        residual_norm(b, self.reg, res, self._norm(b, "embed_ln", self.embed_ln), x, r0)
        res = r0
        for i in range(n_layers):
            x, res = self._layer(b, i, x, res, tune)
        return CompiledBert(b.program({"out": res.base}), res, m, self.cal.res_frac)

    def _layer(self, b, i, x, res, tune):
        d, c, L = self.hidden, self.cfg.cols, self.layers[i]
        m, nbd, p = x.m, -(-self.hidden // c), f"l{i}"
        y = linear_acc(b, f"{p}.qkv", x, L.qkv, out="qkv.y", tune=tune)
        q, k = b.act("q", m, d), b.act("k", m, d)
        v = b.direct("v", m, d)
        prm = b.region(f"{p}.qkv.params", len(L.qkv_params), 4, L.qkv_params)
        outs = []
        for j in range(3 * nbd):
            part, jj = divmod(j, nbd)
            pa = prm + j * 2 * c * 4
            if part == 0:
                outs.append(TileOut(pa, VecFunc.REQUANT, 1, True, q, jj * c))
            elif part == 1:
                outs.append(TileOut(pa, VecFunc.REQUANT, 0, True, k, jj * c))
            else:
                outs.append(TileOut(pa, VecFunc.REQUANT, 0, True, v, jj, direct=True))
        epilogue(b, self.reg, y, outs)
        soft = soft_words(m)
        ctx = b.act("ctx", m, d, self.copies["o"])
        prefill_attention(b, self.reg, q, k, v, ctx, heads=self.heads, head_dim=self.head_dim,
                          soft=b.region(f"{p}.soft", len(soft), 4, soft),
                          ctx=b.region(f"{p}.ctx.params", len(L.ctx), 4, L.ctx))
        yo = linear_acc(b, f"{p}.o", ctx, L.wo, out="o.y", tune=tune)
        x1, r1 = b.act("x1", m, d, self.copies["up"]), b.res("r1", m, d)
        residual_norm(b, self.reg, res, self._norm(b, f"{p}.ln1", L.ln1), x1, r1,
                      update=(yo, b.region(f"{p}.o.params", len(L.o_params), 4, L.o_params)))
        yh = linear_acc(b, f"{p}.up", x1, L.w1, out="up.y", tune=tune)
        f = L.w1.qw.codes.shape[0]
        h = b.act("h", m, f, self.copies["down"])
        up = b.region(f"{p}.up.params", len(L.up_params), 4, L.up_params)
        epilogue(b, self.reg, yh, [TileOut(up + j * 2 * c * 4, VecFunc.GELU, 1, True, h, j * c)
                                   for j in range(-(-f // c))])
        yd = linear_acc(b, f"{p}.down", h, L.w2, out="down.y", tune=tune)
        x2, r2 = b.act("x2", m, d, self.copies["qkv"]), b.res("r2", m, d)
        residual_norm(b, self.reg, r1, self._norm(b, f"{p}.ln2", L.ln2), x2, r2,
                      update=(yd, b.region(f"{p}.down.params", len(L.down_params), 4, L.down_params)))
        return x2, r2

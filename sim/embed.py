"""``mixpim embed``: MiniLM sentence embeddings computed on the tile (golden model or RTL).

Per text: tokenize (the checkpoint's own tokenizer, truncated as sentence-transformers does),
compile the whole encoder for that many tokens (:class:`~mixpim.compiler.bert_encoder.BertCompiler`,
scales calibrated once on the kit's calibration text), run the program, and pool the last hidden
states (mean over the tokens, L2 normalisation). Each embedding is compared with the float32
reference of the same checkpoint (:mod:`mixpim.compiler.bert_float`).
"""

from dataclasses import dataclass

import numpy as np

from ..compiler.bert_encoder import BertCompiler, calibrate_bert
from ..compiler.bert_float import BertFloat, minilm_tokenizer, sentence_embeddings
from ..compiler.checkpoint import minilm_dir
from ..compiler.model_build import ModelBuild
from ..compiler.sample_text import CALIBRATION_TEXT
from ..models.errors import MixpimError
from ..models.executor import execute
from .report import unit_status

__all__ = ["MODEL_PRESET", "EmbedError", "Embedding", "Encoder", "calibration_ids"]

#: The preset whole models run on by default (FP16 activations, group 32, a large DRAM).
MODEL_PRESET = "llm"


class EmbedError(MixpimError, ValueError):
    """A run on the tile failed (its status names the error)."""


def calibration_ids(tokenizer):
    """Token ids of the calibration text, one sequence per sentence."""
    return [tokenizer.encode(s.strip()).ids for s in CALIBRATION_TEXT.split(".") if s.strip()]


@dataclass
class Embedding:
    """One text's result: ``vector`` (hidden,) float64, ``tokens``, ``cycles`` and busy cycles
    per unit, ``instructions``, ``cosine`` against the float32 reference, ``rtl`` (None on the
    golden model; else bit- and cycle-exact against it)."""

    text: str
    vector: np.ndarray
    tokens: int
    cycles: int
    busy: dict
    instructions: int
    cosine: float
    rtl: object = None


class Encoder:
    """all-MiniLM-L6-v2 (the installed checkpoint, or ``folder``) compiled for ``config``."""

    def __init__(self, config, folder=None):
        ModelBuild.check(config)
        folder = minilm_dir() if folder is None else folder
        self.model = BertFloat.load(folder)
        self.tokenizer = minilm_tokenizer(folder)
        self.config = config
        cal = calibrate_bert(self.model, calibration_ids(self.tokenizer))
        self.compiler = BertCompiler(self.model, config, cal)

    def embed(self, text, *, backend="golden"):
        """The :class:`Embedding` of ``text`` on ``backend`` (``golden`` or ``rtl``)."""
        ids = self.tokenizer.encode(text).ids
        cb = self.compiler.lower(ids)
        rtl = None
        if backend == "rtl":
            from .tile_cosim import run_tile
            rtl = run_tile(cb.program)
            res = rtl.golden
        else:
            res = execute(cb.program, check_races=False)
        if not res.ok:
            raise EmbedError(f"the tile stopped with {res.status.error.name} at pc {res.status.error_pc}")
        mean = cb.hidden(res).mean(axis=0)
        vec = mean / max(np.linalg.norm(mean), 1e-12)
        ref = sentence_embeddings(self.model, self.tokenizer, [text])[0].astype(np.float64)
        st = res.status
        return Embedding(text, vec, len(ids), st.cycles, unit_status(st)["busy"],
                         len(cb.program.instructions), float(vec @ ref / np.linalg.norm(ref)), rtl)

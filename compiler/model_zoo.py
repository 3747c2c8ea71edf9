"""The model presets shipped with the kit: Hugging Face ``config.json`` files in
``compiler/model_presets/`` (``_source`` says where each one's numbers come from; the GPT-3
sizes, which have no public checkpoint, are written in GPT-2 form). A model is named by a preset
or by the path of a ``config.json`` (or of a folder holding one)."""

from pathlib import Path

from .model_config import ModelConfig, ModelError

__all__ = ["PRESET_DIR", "model_presets", "model_config"]

#: Where the preset files are.
PRESET_DIR = Path(__file__).parent / "model_presets"


def model_presets():
    """The preset names, sorted."""
    return tuple(sorted(p.stem for p in PRESET_DIR.glob("*.json")))


def model_config(source):
    """The :class:`ModelConfig` of a preset name or a ``config.json`` path.

    Raises :class:`ModelError` if ``source`` is neither, or its config is not supported."""
    if not isinstance(source, (str, Path)):
        raise ModelError(f"a model is a preset name or a config.json path, not {source!r}")
    if str(source) in model_presets():
        return ModelConfig.from_hf(PRESET_DIR / f"{source}.json")
    if Path(source).exists():
        return ModelConfig.from_hf(source)
    raise ModelError(f"no model preset {str(source)!r} and no such file (presets are "
                     f"{', '.join(model_presets())})")

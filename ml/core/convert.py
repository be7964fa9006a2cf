"""Conversion between open_clip ``CLIP`` (our in-memory form) and transformers ``CLIPModel`` directories.

The released SciScore checkpoint is a transformers ``CLIPModel`` directory, while scoring and training
run on open_clip. Both implement the same network (OpenAI's CLIP ViT + causal text transformer), so a
conversion is a renaming of weights plus three reshapes:

* attention: transformers keeps separate ``q_proj``/``k_proj``/``v_proj``; open_clip one
  ``in_proj_weight``/``in_proj_bias`` with q, k, v stacked in that order;
* projections: transformers' ``visual_projection``/``text_projection`` are ``nn.Linear`` (``y = x Wᵀ``),
  open_clip's ``visual.proj``/``text_projection`` are plain matrices (``y = x P``), so ``P = Wᵀ``;
* activations: transformers ``hidden_act="quick_gelu"`` is open_clip ``quick_gelu: true``; ``"gelu"``
  (exact erf GELU) is open_clip's default ``nn.GELU``.

Text pooling agrees for the CLIP BPE vocabulary: open_clip pools at the argmax token id, which is the
end-of-text token 49407 (the largest id; open_clip pads with 0); transformers pools at the first
``eos_token_id`` (49407), or at the argmax for legacy configs with ``eos_token_id == 2``. Padding after
the end-of-text token cannot change the pooled feature because the text attention mask is causal.

Only that standard architecture converts (OpenAI, LAION and SciScore CLIPs, ViT-H-14 included). Other
open_clip towers (timm or HF text towers, ResNets, attentional pooling, layer scale, QK-norm, custom
pooling, SigLIP-style logit bias...) raise :class:`UnsupportedArchitecture` instead of converting into a
model that computes something else. Every conversion also checks that the weights it maps are exactly the
weights the source model has, so an unnoticed architecture feature cannot be dropped silently.
"""

from __future__ import annotations

import json
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import cast

import open_clip
import torch
from open_clip.model import CLIPTextCfg, CLIPVisionCfg

from ml.core.preprocessing import PreprocessConfig, preprocess_config
from ml.core.tokenizers import save_clip_tokenizer

CLIP_VOCAB_SIZE = 49408  # the BPE vocabulary that ml.core.tokenizers rebuilds
CLIP_EOT_ID = 49407
CLIP_SOT_ID = 49406
DEFAULT_LN_EPS = 1e-5  # open_clip's LayerNorm default and transformers' CLIP default
PREPROCESSOR_CONFIG = "preprocessor_config.json"


class UnsupportedArchitecture(ValueError):
    """The model is not a standard CLIP ViT + text transformer, so it has no faithful counterpart."""


# --- weight names ------------------------------------------------------------------------------

_LAYER_COPIES = [
    ("self_attn.out_proj.weight", "attn.out_proj.weight"),
    ("self_attn.out_proj.bias", "attn.out_proj.bias"),
    ("layer_norm1.weight", "ln_1.weight"),
    ("layer_norm1.bias", "ln_1.bias"),
    ("layer_norm2.weight", "ln_2.weight"),
    ("layer_norm2.bias", "ln_2.bias"),
    ("mlp.fc1.weight", "mlp.c_fc.weight"),
    ("mlp.fc1.bias", "mlp.c_fc.bias"),
    ("mlp.fc2.weight", "mlp.c_proj.weight"),
    ("mlp.fc2.bias", "mlp.c_proj.bias"),
]

_TOP_COPIES = [
    ("logit_scale", "logit_scale"),
    ("text_model.embeddings.token_embedding.weight", "token_embedding.weight"),
    ("text_model.embeddings.position_embedding.weight", "positional_embedding"),
    ("text_model.final_layer_norm.weight", "ln_final.weight"),
    ("text_model.final_layer_norm.bias", "ln_final.bias"),
    ("vision_model.embeddings.class_embedding", "visual.class_embedding"),
    ("vision_model.embeddings.patch_embedding.weight", "visual.conv1.weight"),
    ("vision_model.embeddings.position_embedding.weight", "visual.positional_embedding"),
    ("vision_model.pre_layrnorm.weight", "visual.ln_pre.weight"),
    ("vision_model.pre_layrnorm.bias", "visual.ln_pre.bias"),
    ("vision_model.post_layernorm.weight", "visual.ln_post.weight"),
    ("vision_model.post_layernorm.bias", "visual.ln_post.bias"),
]

_TRANSPOSED = [("visual_projection.weight", "visual.proj"), ("text_projection.weight", "text_projection")]


def _weight_map(text_layers: int, vision_layers: int):
    """(copies, transposed, qkv) name pairs ``(hf_name, open_clip_name)`` for the whole model.

    ``qkv`` entries are ``((hf_q, hf_k, hf_v), open_clip_in_proj)``.
    """
    copies, qkv = list(_TOP_COPIES), []
    towers = [
        ("text_model.encoder.layers", "transformer.resblocks", text_layers),
        ("vision_model.encoder.layers", "visual.transformer.resblocks", vision_layers),
    ]
    for hf_prefix, oc_prefix, layers in towers:
        for i in range(layers):
            hf, oc = f"{hf_prefix}.{i}", f"{oc_prefix}.{i}"
            copies += [(f"{hf}.{h}", f"{oc}.{o}") for h, o in _LAYER_COPIES]
            for kind in ("weight", "bias"):
                qkv.append((tuple(f"{hf}.self_attn.{p}_proj.{kind}" for p in "qkv"), f"{oc}.attn.in_proj_{kind}"))
    return copies, list(_TRANSPOSED), qkv


def _check_names(state: dict, expected: set[str], source: str) -> None:
    missing, unexpected = expected - state.keys(), state.keys() - expected
    if missing or unexpected:
        raise UnsupportedArchitecture(
            f"{source} weights do not match a standard CLIP: missing {sorted(missing)[:8]}, "
            f"unexpected {sorted(unexpected)[:8]}."
        )


def hf_state_to_open_clip(hf_state: dict, text_layers: int, vision_layers: int) -> dict:
    """open_clip weights from transformers ones; every tensor is a fresh copy (no storage shared)."""
    copies, transposed, qkv = _weight_map(text_layers, vision_layers)
    expected = {h for h, _ in copies + transposed} | {h for names, _ in qkv for h in names}
    _check_names(hf_state, expected, "transformers CLIPModel")
    state = {o: hf_state[h].clone() for h, o in copies}
    state.update({o: _transposed(hf_state[h]) for h, o in transposed})
    state.update({o: torch.cat([hf_state[h] for h in names]) for names, o in qkv})
    return state


def open_clip_state_to_hf(oc_state: dict, text_layers: int, vision_layers: int) -> dict:
    """transformers weights from open_clip ones; every tensor is a fresh copy (no storage shared)."""
    copies, transposed, qkv = _weight_map(text_layers, vision_layers)
    expected = {o for _, o in copies + transposed + qkv}
    _check_names(oc_state, expected, "open_clip CLIP")
    state = {h: oc_state[o].clone() for h, o in copies}
    state.update({h: _transposed(oc_state[o]) for h, o in transposed})
    for names, o in qkv:
        state.update(zip(names, (part.clone() for part in oc_state[o].chunk(3)), strict=True))
    return state


def _transposed(matrix: torch.Tensor) -> torch.Tensor:
    return matrix.t().clone(memory_format=torch.contiguous_format)


# --- configs -----------------------------------------------------------------------------------


def _mlp_ratio(intermediate: int, width: int) -> float:
    """A ratio for which open_clip's ``int(width * mlp_ratio)`` gives back ``intermediate`` exactly."""
    ratio = intermediate / width
    return ratio if int(width * ratio) == intermediate else (intermediate + 0.5) / width


def _activation(hf_config) -> bool:
    """open_clip's ``quick_gelu`` flag for the transformers activation of both towers."""
    acts = {hf_config.text_config.hidden_act, hf_config.vision_config.hidden_act}
    if len(acts) != 1 or not acts <= {"quick_gelu", "gelu"}:
        raise UnsupportedArchitecture(
            f"activations {sorted(acts)}: only 'quick_gelu' or 'gelu', the same in both towers, convert to open_clip."
        )
    return acts == {"quick_gelu"}


def open_clip_cfg_from_hf(hf_config) -> dict:
    """The open_clip model config (``CLIP(**cfg)``) equivalent to a transformers ``CLIPConfig``."""
    text, vision = hf_config.text_config, hf_config.vision_config
    if text.vocab_size != CLIP_VOCAB_SIZE:
        raise UnsupportedArchitecture(
            f"text vocab_size {text.vocab_size}: only the CLIP BPE vocabulary ({CLIP_VOCAB_SIZE}) is supported."
        )
    if text.eos_token_id not in (CLIP_EOT_ID, 2):
        raise UnsupportedArchitecture(f"text eos_token_id {text.eos_token_id}: CLIP pools at {CLIP_EOT_ID}.")
    vision_cfg = {
        "image_size": vision.image_size,
        "layers": vision.num_hidden_layers,
        "width": vision.hidden_size,
        "head_width": vision.hidden_size // vision.num_attention_heads,
        "patch_size": vision.patch_size,
    }
    text_cfg = {
        "context_length": text.max_position_embeddings,
        "vocab_size": text.vocab_size,
        "width": text.hidden_size,
        "heads": text.num_attention_heads,
        "layers": text.num_hidden_layers,
    }
    for cfg, tower in ((vision_cfg, vision), (text_cfg, text)):
        if tower.hidden_size % tower.num_attention_heads:
            raise UnsupportedArchitecture(f"{tower.model_type}: hidden_size is not a multiple of the head count.")
        if tower.intermediate_size != 4 * tower.hidden_size:
            cfg["mlp_ratio"] = _mlp_ratio(tower.intermediate_size, tower.hidden_size)
        if tower.layer_norm_eps != DEFAULT_LN_EPS:
            cfg["norm_kwargs"] = {"eps": tower.layer_norm_eps}
    model_cfg = {"embed_dim": hf_config.projection_dim, "vision_cfg": vision_cfg, "text_cfg": text_cfg}
    if _activation(hf_config):
        model_cfg["quick_gelu"] = True
    return model_cfg


def _check_open_clip_supported(model, model_cfg: dict) -> tuple[CLIPVisionCfg, CLIPTextCfg]:
    """Raise :class:`UnsupportedArchitecture` listing every feature that has no transformers counterpart."""
    if type(model) is not open_clip.model.CLIP:
        raise UnsupportedArchitecture(
            f"{type(model).__name__}: only open_clip's plain CLIP (not CustomTextCLIP, CoCa, ...) converts."
        )
    vision = CLIPVisionCfg(**_as_dict(model_cfg["vision_cfg"]))
    text = CLIPTextCfg(**_as_dict(model_cfg["text_cfg"]))
    custom_block = ("qk_norm", "scaled_cosine_attn", "scale_heads", "scale_attn_inner", "scale_attn", "scale_fc")
    problems = [
        (vision.timm_model_name, "timm vision tower"),
        (isinstance(vision.layers, (tuple, list)), "ResNet vision tower"),
        (vision.attentional_pool, "vision attentional pooling"),
        (vision.pool_type != "tok", f"vision pool_type {vision.pool_type!r} (CLIP pools the class token)"),
        (vision.final_ln_after_pool, "vision final_ln_after_pool"),
        (vision.no_ln_pre, "vision without ln_pre"),
        (vision.pos_embed_type != "learnable", f"vision pos_embed_type {vision.pos_embed_type!r}"),
        (text.hf_model_name, "transformers text tower"),
        (text.hf_tokenizer_name or text.vocab_size != CLIP_VOCAB_SIZE, "a tokenizer other than CLIP's BPE"),
        (
            text.pool_type not in ("argmax", "eos") or (text.pool_type == "eos" and text.eos_id != CLIP_EOT_ID),
            f"text pool_type {text.pool_type!r}",
        ),
        (text.embed_cls, "text embed_cls"),
        (text.no_causal_mask, "text without causal mask"),
        (text.final_ln_after_pool, "text final_ln_after_pool"),
        (text.proj_type != "linear" or text.proj_bias, "text projection other than a bias-free linear map"),
        (model.logit_bias is not None, "logit_bias (SigLIP-style)"),
        (model.logit_scale.ndim != 0, "non-scalar logit_scale"),
    ]
    for name, cfg in (("vision", vision), ("text", text)):
        problems += [(getattr(cfg, flag), f"{name} {flag}") for flag in custom_block]
        problems += [
            (cfg.ls_init_value is not None, f"{name} layer scale"),
            (cfg.act_kwargs, f"{name} act_kwargs"),
            (set(cfg.norm_kwargs or {}) - {"eps"}, f"{name} norm_kwargs other than eps"),
            (cfg.block_type not in (None, "default"), f"{name} block_type {cfg.block_type!r}"),
        ]
    found = [message for bad, message in problems if bad]
    if found:
        raise UnsupportedArchitecture("not a standard CLIP ViT/text transformer: " + "; ".join(found) + ".")
    return vision, text


def hf_config_from_open_clip(model, model_cfg: dict):
    """The transformers ``CLIPConfig`` equivalent to an open_clip ``CLIP`` and its config."""
    from transformers import CLIPConfig

    vision, text = _check_open_clip_supported(model, model_cfg)
    act = "quick_gelu" if model_cfg.get("quick_gelu") else "gelu"
    image_size = vision.image_size if isinstance(vision.image_size, int) else vision.image_size[0]
    patch_size = vision.patch_size if isinstance(vision.patch_size, int) else vision.patch_size[0]
    if model.visual.image_size != (image_size, image_size) or model.visual.patch_size != (patch_size, patch_size):
        raise UnsupportedArchitecture("non-square images or patches: transformers CLIP takes one size.")
    projection_dim = model_cfg["embed_dim"]
    vision_config = {
        "hidden_size": vision.width,
        "intermediate_size": int(vision.width * vision.mlp_ratio),
        "num_hidden_layers": vision.layers,
        "num_attention_heads": vision.width // vision.head_width,
        "image_size": image_size,
        "patch_size": patch_size,
        "hidden_act": act,
        "layer_norm_eps": (vision.norm_kwargs or {}).get("eps", DEFAULT_LN_EPS),
        "projection_dim": projection_dim,
    }
    text_config = {
        "vocab_size": text.vocab_size,
        "hidden_size": text.width,
        "intermediate_size": int(text.width * text.mlp_ratio),
        "num_hidden_layers": text.layers,
        "num_attention_heads": text.heads,
        "max_position_embeddings": text.context_length,
        "hidden_act": act,
        "layer_norm_eps": (text.norm_kwargs or {}).get("eps", DEFAULT_LN_EPS),
        "projection_dim": projection_dim,
        "bos_token_id": CLIP_SOT_ID,
        "eos_token_id": CLIP_EOT_ID,
    }
    return CLIPConfig(text_config=text_config, vision_config=vision_config, projection_dim=projection_dim)


def build_without_init(build):
    """Build a module with its parameters on the meta device: no random initialisation (a minute of CPU
    for ViT-H), since every parameter is assigned next with ``load_state_dict(..., assign=True)``, whose
    strict key check guarantees none stays empty. Buffers (causal mask, position ids) are built for real.
    The state-dict converters return fresh tensors, so the new model shares no storage with its source."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        return build()


def _as_dict(cfg) -> dict:
    return asdict(cfg) if is_dataclass(cfg) and not isinstance(cfg, type) else dict(cfg)


# --- preprocessing -------------------------------------------------------------------------------


def read_preprocess_config(directory: str | Path) -> dict:
    """open_clip-style preprocess config (size, mean, std) from a ``preprocessor_config.json``; ``{}`` if none.

    The crop size is the model's input size; a resize size that differs from it (e.g. 256 → crop 224)
    is not kept: :class:`~ml.core.scorer.Scorer` resizes the shortest side straight to the crop size,
    which is what every CLIP processor config in use does.
    """
    path = Path(directory) / PREPROCESSOR_CONFIG
    if not path.is_file():
        return {}
    config = json.loads(path.read_text())
    crop = config.get("crop_size") or config.get("size")
    if isinstance(crop, dict):
        crop = crop.get("height") or crop.get("shortest_edge")
    out: dict[str, int | list[float]] = {"size": int(crop)} if crop else {}
    if config.get("image_mean"):
        out["mean"] = [float(v) for v in config["image_mean"]]
    if config.get("image_std"):
        out["std"] = [float(v) for v in config["image_std"]]
    return out


def _save_image_processor(directory: Path, size: int, mean, std) -> None:
    from PIL import Image
    from transformers import CLIPImageProcessor

    CLIPImageProcessor(
        do_resize=True,
        size={"shortest_edge": size},
        resample=Image.Resampling.BICUBIC,
        do_center_crop=True,
        crop_size={"height": size, "width": size},
        do_rescale=True,
        do_normalize=True,
        image_mean=list(mean),
        image_std=list(std),
        do_convert_rgb=True,
    ).save_pretrained(directory)


# --- public entry points ---------------------------------------------------------------------------


def load_hf_clip_as_open_clip(directory: str | Path):
    """Load a transformers ``CLIPModel`` directory as ``(open_clip CLIP, model_cfg, preprocess_cfg)``.

    Loads through ``CLIPModel.from_pretrained`` (the code path users of the released checkpoint run),
    builds the open_clip config from the transformers config and maps every weight; the open_clip model
    is fp32 whatever the checkpoint's dtype. transformers only warns when a checkpoint lacks weights (and
    initialises them at random): here that is an error, as is a directory of another model type.
    """
    from transformers import AutoConfig, CLIPModel

    model_type = AutoConfig.from_pretrained(str(directory)).model_type
    if model_type != "clip":
        raise UnsupportedArchitecture(f"{directory}: a {model_type!r} model, not a transformers CLIPModel.")
    loaded = CLIPModel.from_pretrained(str(directory), output_loading_info=True)
    hf_model, info = cast(tuple[CLIPModel, dict], loaded)  # output_loading_info: (model, loading info)
    damaged = {k: sorted(info[k])[:8] for k in ("missing_keys", "unexpected_keys", "mismatched_keys") if info[k]}
    if damaged:
        raise ValueError(f"{directory}: checkpoint does not match its config: {damaged}")
    model_cfg = open_clip_cfg_from_hf(hf_model.config)
    text_layers, vision_layers = model_cfg["text_cfg"]["layers"], model_cfg["vision_cfg"]["layers"]
    state = hf_state_to_open_clip(hf_model.state_dict(), text_layers, vision_layers)
    del hf_model
    model = build_without_init(lambda: open_clip.model.CLIP(**model_cfg))
    model.load_state_dict({k: v.float() for k, v in state.items()}, assign=True)
    return model.eval(), model_cfg, read_preprocess_config(directory)


def save_open_clip_as_hf(scorer_or_model, model_cfg: dict | None, directory: str | Path, preprocess=None) -> Path:
    """Write an open_clip CLIP as a transformers ``CLIPModel`` directory with tokenizer and image processor.

    ``scorer_or_model`` is a :class:`~ml.core.scorer.Scorer` (``model_cfg`` and ``preprocess`` may then be
    ``None``: taken from it) or an open_clip ``CLIP`` with its ``model_cfg``. ``preprocess`` is a
    :class:`~ml.core.preprocessing.PreprocessConfig`, an open_clip-style dict (``size``, ``mean``, ``std``)
    or ``None`` (the model's image size and OpenAI's mean/std). The result loads with
    ``CLIPModel.from_pretrained(directory)``, ``AutoTokenizer.from_pretrained(directory)`` (ids identical to
    open_clip's) and ``AutoProcessor``.
    """
    from transformers import CLIPModel

    model = getattr(scorer_or_model, "model", scorer_or_model)
    model_cfg = model_cfg if model_cfg is not None else getattr(scorer_or_model, "model_cfg", None)
    if model_cfg is None:
        raise ValueError("model_cfg is required with a bare open_clip model (a Scorer carries its own).")
    if preprocess is None:
        preprocess = getattr(scorer_or_model, "preprocess", None) or preprocess_config(model_cfg, {})
    if not isinstance(preprocess, PreprocessConfig):
        preprocess = preprocess_config(model_cfg, preprocess)

    config = hf_config_from_open_clip(model, model_cfg)
    oc_state = {k: v.detach().cpu().float() for k, v in model.state_dict().items()}
    hf_state = open_clip_state_to_hf(
        oc_state, config.text_config.num_hidden_layers, config.vision_config.num_hidden_layers
    )
    hf_model = build_without_init(lambda: CLIPModel(config))
    hf_model.load_state_dict(hf_state, assign=True)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    hf_model.save_pretrained(directory)
    save_clip_tokenizer(directory)
    _save_image_processor(directory, preprocess.size, preprocess.mean, preprocess.std)
    return directory

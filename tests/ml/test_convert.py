"""open_clip CLIP <-> transformers CLIPModel: round trips, plain-transformers scoring, refusals."""

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, CLIPModel, CLIPTextConfig, CLIPTextModel

from ml.core.convert import (
    UnsupportedArchitecture,
    hf_config_from_open_clip,
    load_hf_clip_as_open_clip,
    open_clip_cfg_from_hf,
    open_clip_state_to_hf,
    read_preprocess_config,
    save_open_clip_as_hf,
)
from ml.core.scorer import Scorer
from ml.core.tiny import TINY_CLIP_CFG, make_tiny_hf_scorer, tiny_scorer

PROMPTS = [
    "An unripe mango, simple and realistic.",
    "A nail left in the rain for months.",
    "Ice cubes on a hot pan!",
    "x",
    "Café crème brûlée, naïve 日本 😀",
    "a very long prompt that runs past the context length " * 8,
]

# quick_gelu, a non-default layer-norm eps and MLP ratio: every config mapping that the tiny model skips.
VARIANT_CFG = {
    "embed_dim": 24,
    "quick_gelu": True,
    "vision_cfg": {
        "image_size": 24,
        "layers": 1,
        "width": 48,
        "head_width": 16,
        "patch_size": 6,
        "mlp_ratio": 2.5,
        "norm_kwargs": {"eps": 1e-6},
    },
    "text_cfg": {
        "context_length": 77,
        "vocab_size": 49408,
        "width": 32,
        "heads": 4,
        "layers": 1,
        "mlp_ratio": 3.0,
        "norm_kwargs": {"eps": 1e-6},
    },
}


def images(n=6):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (40 + 3 * i, 52 - 2 * i, 3), dtype=np.uint8)) for i in range(n)]


def scorer_for(cfg, seed=0):
    torch.manual_seed(seed)
    model = open_clip.model.CLIP(**cfg)
    with torch.no_grad():  # a logit scale away from the init value, so a lost logit_scale would show
        model.logit_scale.fill_(3.0)
    return Scorer.from_model(model, cfg, device="cpu")


def hf_scores(directory, prompts, pixels):
    """SciScore the way the released loading code computes it: plain transformers, no open_clip."""
    model = CLIPModel.from_pretrained(directory).eval()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    tokens = tokenizer(prompts, padding=True, truncation=True, max_length=77, return_tensors="pt")
    with torch.no_grad():
        text = _tensor(model.get_text_features(**tokens))
        image = _tensor(model.get_image_features(pixel_values=pixels))
    text, image = text / text.norm(dim=-1, keepdim=True), image / image.norm(dim=-1, keepdim=True)
    return model.logit_scale.exp() * (text * image).sum(-1)


def _tensor(output):
    return output if isinstance(output, torch.Tensor) else output.pooler_output


@pytest.mark.parametrize("cfg", [TINY_CLIP_CFG, VARIANT_CFG], ids=["tiny", "variant"])
def test_it_round_trips_open_clip_through_transformers_without_changing_scores(cfg, tmp_path):
    original = scorer_for(cfg)
    save_open_clip_as_hf(original, None, tmp_path / "hf")
    back = Scorer.load(tmp_path / "hf", device="cpu")

    assert back.model_cfg["embed_dim"] == cfg["embed_dim"]
    assert bool(back.model_cfg.get("quick_gelu")) == bool(cfg.get("quick_gelu"))
    before, after = original.score(PROMPTS, images()), back.score(PROMPTS, images())
    assert (before - after).abs().max() <= 1e-5
    assert back.model.state_dict().keys() == original.model.state_dict().keys()


@pytest.mark.parametrize("cfg", [TINY_CLIP_CFG, VARIANT_CFG], ids=["tiny", "variant"])
def test_it_scores_like_plain_transformers_with_the_saved_tokenizer(cfg, tmp_path):
    scorer = scorer_for(cfg)
    save_open_clip_as_hf(scorer, None, tmp_path)
    pixels = scorer.pixels(images())

    expected = scorer.score(PROMPTS, images())
    assert (hf_scores(tmp_path, PROMPTS, pixels) - expected).abs().max() <= 1e-4


def test_it_round_trips_transformers_through_open_clip(tmp_path):
    make_tiny_hf_scorer(tmp_path / "a", seed=3)
    model, model_cfg, preprocess_cfg = load_hf_clip_as_open_clip(tmp_path / "a")
    save_open_clip_as_hf(model, model_cfg, tmp_path / "b", preprocess_cfg)

    first = CLIPModel.from_pretrained(tmp_path / "a").state_dict()
    second = CLIPModel.from_pretrained(tmp_path / "b").state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    pixels = Scorer.load(tmp_path / "a", device="cpu").pixels(images())
    assert (hf_scores(tmp_path / "a", PROMPTS, pixels) - hf_scores(tmp_path / "b", PROMPTS, pixels)).abs().max() <= 1e-5


def test_it_maps_the_attention_and_projection_weights_by_their_layout(tmp_path):
    scorer = tiny_scorer(seed=1)
    save_open_clip_as_hf(scorer, None, tmp_path)
    hf = CLIPModel.from_pretrained(tmp_path).state_dict()
    oc = scorer.model.state_dict()

    q, k, v = oc["transformer.resblocks.1.attn.in_proj_weight"].chunk(3)
    assert torch.equal(hf["text_model.encoder.layers.1.self_attn.q_proj.weight"], q)
    assert torch.equal(hf["text_model.encoder.layers.1.self_attn.v_proj.weight"], v)
    assert torch.equal(
        hf["vision_model.encoder.layers.0.self_attn.k_proj.bias"],
        oc["visual.transformer.resblocks.0.attn.in_proj_bias"].chunk(3)[1],
    )
    assert torch.equal(hf["visual_projection.weight"], oc["visual.proj"].T)
    assert torch.equal(hf["text_projection.weight"], oc["text_projection"].T)
    assert torch.equal(hf["logit_scale"], oc["logit_scale"])


@pytest.mark.parametrize("arch", ["ViT-H-14", "ViT-L-14-quickgelu", "ViT-B-32", "ViT-bigG-14"])
def test_it_maps_full_size_architectures_shape_for_shape(arch):
    """On the meta device: no memory, no weights, every name and shape of the real models."""
    cfg = open_clip.get_model_config(arch)
    with torch.device("meta"):
        model = open_clip.model.CLIP(**cfg)
        config = hf_config_from_open_clip(model, cfg)
        expected = CLIPModel(config).state_dict()
        back = open_clip.model.CLIP(**open_clip_cfg_from_hf(config)).state_dict()
    mapped = open_clip_state_to_hf(
        model.state_dict(), config.text_config.num_hidden_layers, config.vision_config.num_hidden_layers
    )

    assert {k: v.shape for k, v in mapped.items()} == {k: v.shape for k, v in expected.items()}
    assert {k: v.shape for k, v in back.items()} == {k: v.shape for k, v in model.state_dict().items()}
    assert config.vision_config.hidden_act == ("quick_gelu" if cfg.get("quick_gelu") else "gelu")


def test_it_writes_a_directory_that_the_released_loading_code_reads(tmp_path):
    make_tiny_hf_scorer(tmp_path, seed=0)
    config = CLIPModel.from_pretrained(tmp_path).config
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)

    assert config.text_config.eos_token_id == 49407 and config.text_config.hidden_act == "gelu"
    assert tokenizer.model_max_length == 77
    assert read_preprocess_config(tmp_path) == {
        "size": 32,
        "mean": list(open_clip.OPENAI_DATASET_MEAN),
        "std": list(open_clip.OPENAI_DATASET_STD),
    }


def test_it_keeps_a_custom_preprocess_through_the_transformers_directory(tmp_path):
    scorer = tiny_scorer()
    save_open_clip_as_hf(scorer, None, tmp_path, {"size": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]})

    loaded = Scorer.load(tmp_path, device="cpu")
    assert loaded.preprocess.mean == (0.5, 0.5, 0.5) and loaded.preprocess.std == (0.25, 0.25, 0.25)


def test_it_reads_a_processor_config_with_a_larger_resize_than_crop(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(
        '{"size": {"shortest_edge": 256}, "crop_size": 224, "image_mean": [0.5, 0.5, 0.5], "image_std": [1, 1, 1]}'
    )

    assert read_preprocess_config(tmp_path) == {"size": 224, "mean": [0.5] * 3, "std": [1.0] * 3}
    assert read_preprocess_config(tmp_path / "missing") == {}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"vision_cfg": {"attentional_pool": True}}, "attentional pooling"),
        ({"vision_cfg": {"ls_init_value": 0.1}}, "layer scale"),
        ({"vision_cfg": {"pool_type": "avg"}}, "pool_type 'avg'"),
        ({"text_cfg": {"pool_type": "last"}}, "pool_type 'last'"),
        ({"text_cfg": {"proj_bias": True}}, "text projection"),
        ({"text_cfg": {"qk_norm": True}}, "text qk_norm"),
        ({"init_logit_bias": -10.0}, "logit_bias"),
    ],
)
def test_it_refuses_architectures_transformers_clip_cannot_express(change, message, tmp_path):
    cfg = {
        **TINY_CLIP_CFG,
        "vision_cfg": dict(TINY_CLIP_CFG["vision_cfg"]),
        "text_cfg": dict(TINY_CLIP_CFG["text_cfg"]),
    }
    for key, value in change.items():
        if isinstance(value, dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    model = open_clip.model.CLIP(**cfg)

    with pytest.raises(UnsupportedArchitecture, match=message):
        save_open_clip_as_hf(model, cfg, tmp_path)
    assert not (tmp_path / "config.json").exists()


def test_it_refuses_a_custom_text_tower(tmp_path):
    model = open_clip.model.CustomTextCLIP(**TINY_CLIP_CFG)

    with pytest.raises(UnsupportedArchitecture, match="CustomTextCLIP"):
        save_open_clip_as_hf(model, TINY_CLIP_CFG, tmp_path)


def test_it_refuses_a_transformers_clip_with_another_activation(tmp_path):
    make_tiny_hf_scorer(tmp_path)
    model = CLIPModel.from_pretrained(tmp_path)
    model.config.vision_config.hidden_act = "relu"
    model.save_pretrained(tmp_path)

    with pytest.raises(UnsupportedArchitecture, match="relu"):
        load_hf_clip_as_open_clip(tmp_path)


def test_it_loads_a_half_precision_checkpoint_as_a_trainable_fp32_model(tmp_path):
    make_tiny_hf_scorer(tmp_path)
    CLIPModel.from_pretrained(tmp_path).half().save_pretrained(tmp_path)

    model, _, _ = load_hf_clip_as_open_clip(tmp_path)
    assert all(p.dtype == torch.float32 and p.requires_grad and p.device.type == "cpu" for p in model.parameters())
    assert isinstance(model.text_projection, torch.nn.Parameter)


def test_it_refuses_a_checkpoint_that_transformers_would_patch_with_random_weights(tmp_path):
    make_tiny_hf_scorer(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    del state["text_projection.weight"]
    state["text_model.embeddings.position_ids"] = torch.arange(77)[None]  # legacy buffer: ignored, not an error
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})

    with pytest.raises(ValueError, match=r"does not match its config: \{'missing_keys': \['text_projection.weight'\]"):
        load_hf_clip_as_open_clip(tmp_path)


def test_it_refuses_a_directory_of_another_model_type(tmp_path):
    CLIPTextModel(
        CLIPTextConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    ).save_pretrained(tmp_path)

    with pytest.raises(UnsupportedArchitecture, match="'clip_text_model' model"):
        load_hf_clip_as_open_clip(tmp_path)


@pytest.mark.parametrize("fmt, loadable", [("open_clip", [""]), ("hf", [""]), ("both", ["open_clip", "hf"])])
def test_scorer_save_writes_each_format_and_loads_back(fmt, loadable, tmp_path):
    scorer = tiny_scorer(seed=2)
    scorer.save(tmp_path / "out", format=fmt)
    expected = scorer.score(PROMPTS[:3], images(3))

    for sub in loadable:
        loaded = Scorer.load(tmp_path / "out" / sub, device="cpu")
        assert (loaded.score(PROMPTS[:3], images(3)) - expected).abs().max() <= 1e-5


def test_scorer_save_rejects_an_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="format 'onnx'"):
        tiny_scorer().save(tmp_path, format="onnx")

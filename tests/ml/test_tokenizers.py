"""The offline CLIP tokenizer: transformers ids equal open_clip's, and AutoTokenizer loads it."""

import open_clip
import pytest
from transformers import AutoTokenizer

from ml.core.tokenizers import save_clip_tokenizer

PROMPTS = [
    "An unripe mango, simple and realistic.",
    "Ice cubes -- on a hot pan?! (yes): 100°C; 3.5 kg & co.",
    "Café crème brûlée, naïve façade — déjà vu…",
    "日本語のテキスト, Ελληνικά, русский 😀🔥",
    "  MIXED   case\tand\nwhitespace  ",
    "x²",
    "",
    "a long prompt that does not fit in seventy-seven tokens " * 10,
]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    directory = tmp_path_factory.mktemp("clip-tokenizer")
    save_clip_tokenizer(directory)
    return directory


def same_ids(directory, prompt) -> bool:
    """transformers ids, padded with 0 as open_clip pads, equal open_clip's."""
    expected = open_clip.get_tokenizer("ViT-H-14")([prompt])[0].tolist()
    ids = AutoTokenizer.from_pretrained(directory)(prompt, padding="max_length", truncation=True, max_length=77)
    return [i if mask else 0 for i, mask in zip(ids["input_ids"], ids["attention_mask"], strict=True)] == expected


@pytest.mark.parametrize("prompt", PROMPTS)
def test_it_gives_the_ids_of_open_clip(saved, prompt):
    assert same_ids(saved, prompt)


def test_it_loads_as_a_77_token_clip_tokenizer(saved):
    tokenizer = AutoTokenizer.from_pretrained(saved)

    assert tokenizer.model_max_length == 77
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id) == (49406, 49407)
    assert len(tokenizer) == 49408
    assert (saved / "vocab.json").is_file() and (saved / "merges.txt").is_file()


def test_it_returns_the_tokenizer_it_saved(tmp_path):
    tokenizer = save_clip_tokenizer(tmp_path / "new")

    expected = open_clip.get_tokenizer("ViT-H-14")(["a mango"])[0][:4].tolist()
    assert tokenizer("a mango")["input_ids"] == expected == [49406, 320, 13962, 49407]


@pytest.mark.xfail(
    strict=True,
    reason="open_clip cleans text with ftfy and html.unescape; transformers' CLIP "
    "tokenizer (ours and the released SciScore's) does not",
)
@pytest.mark.parametrize("prompt", ["It’s “ripe”", "salt &amp; water", "ﬁne ｆｕｌｌ width"])
def test_known_divergence_from_open_clip_text_cleaning(saved, prompt):
    assert same_ids(saved, prompt)

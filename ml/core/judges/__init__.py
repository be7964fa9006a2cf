"""LMM judges: vision-language models asked which of two images is scientifically correct (the pairwise
protocol) or how well one generated image shows the implied outcome (the rubric protocol).

Modules: :mod:`.backend` (the request/reply interface), :mod:`.protocol` (prompts, parsing, order swap,
the rubric gate), :mod:`.local` (transformers), :mod:`.endpoint` (OpenAI-compatible servers),
:mod:`.tiny` (random-weight tiny models built from configs, for tests and the demo).
"""

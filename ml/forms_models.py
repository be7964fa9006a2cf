"""The form of ``/ml/models/new/``: register a checkpoint or an LMM judge from the browser.

The registry (:func:`ml.services.registry.register_model`) checks what goes together (a LoRA's parent, a
judge's backend config: :func:`ml.services.judges.clean_config`); this form only parses: the config is a JSON
object, the location an absolute path or, for an endpoint judge, the server's URL.
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath

from django import forms

from curation.models import DatasetVersion
from ml.models import ModelVersion
from ml.services import judges

CONFIG_HELP = (
    'A JSON object. A bare scorer checkpoint file: {"arch": "ViT-H-14"}. A local LMM judge: {"backend": "local"} '
    '(optional "batch_size", "dtype"). An endpoint judge: {"backend": "endpoint", "model": "<served model name>", '
    '"api_key_env": "<the workers\' environment variable holding the key>"} (optional "max_concurrency", '
    '"timeout", "max_retries", "request_budget"). Keys are never stored: name the variable instead.'
)


class ModelRegisterForm(forms.Form):
    kind = forms.ChoiceField(choices=ModelVersion.Kind.choices)
    name = forms.CharField(max_length=200, help_text="Unique per kind, e.g. sciscore-v3 or qwen2-vl-7b.")
    location = forms.CharField(
        max_length=1000,
        help_text="Absolute path on the GPU workers' filesystem; an endpoint judge's server base URL "
        "(http://host:8000/v1).",
    )
    config = forms.CharField(
        required=False,
        max_length=20_000,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}),
        help_text=CONFIG_HELP,
    )
    parent = forms.ModelChoiceField(
        ModelVersion.objects.order_by("kind", "name"), required=False, help_text="A LoRA adapter needs its generator."
    )
    dataset_version = forms.ModelChoiceField(DatasetVersion.objects.order_by("-created_at"), required=False)

    def clean_config(self) -> dict:
        text = self.cleaned_data["config"].strip()
        if not text:
            return {}
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}.") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("The config must be a JSON object ({...}).")
        return value

    def clean(self):
        data = super().clean()
        location, kind = (data.get("location") or "").strip(), data.get("kind")
        is_endpoint = kind == ModelVersion.Kind.JUDGE and judges.is_url(location)
        if location and not is_endpoint and not PurePosixPath(location).is_absolute():
            self.add_error("location", "An absolute path on the GPU workers' filesystem (starting with /).")
        return data

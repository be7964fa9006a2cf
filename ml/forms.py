"""The "start a run" form, built from a kind's parameter description (:func:`ml.services.runs.kinds.describe`).

References become selects (models of the kinds the parameter takes, dataset versions), a tuples
reference a task select with a limit, or a list of ids; task references tick boxes, path references
a text input. Typed fields become inputs prefilled with their defaults (a list default with choices:
tick boxes); a type or reference this form does not know is a JSON input. The form only converts
types: bounds and everything else are checked by :func:`ml.services.runs.start_run`, whose errors
:meth:`RunForm.add_service_errors` puts next to their fields. What is left empty is left out, so
the service fills in the default. A field whose default is ``None`` (set by another parameter, such as a
training run's ``recipe``) is offered empty, a choice or yes/no with a "from the recipe" blank.
"""

from __future__ import annotations

from django import forms

from annotation.models import Task
from curation.models import DatasetVersion
from ml.models import ModelVersion
from ml.services.runs import kinds

NONE = [("", "—")]
FROM_RECIPE = "— (the recipe's)"
EMPTY = (None, "", [])
CHOICES_LIMIT = 500  # registry entries and dataset versions offered per select, latest first
TUPLES_LIMIT = 100  # the default limit of a task selection
ID_REFS = ("model", "dataset_version")  # references sent as an integer id


def _label(name: str) -> str:
    return name.replace("_", " ")


def _json(label: str, default=None, help_text: str = "") -> forms.Field:
    return forms.JSONField(required=False, initial=default, label=label, help_text=f"JSON. {help_text}".strip())


def _typed(field: dict) -> forms.Field:
    label, default = _label(field["name"]), field.get("default")
    if field["type"] == "bool" and default is None:
        return forms.NullBooleanField(required=False, label=label, help_text="Unknown: the recipe's.")
    if field["type"] == "bool":
        return forms.BooleanField(required=False, initial=default, label=label)
    if field["type"] in ("int", "float"):
        attrs = {"min": field["minimum"], "max": field["maximum"]}
        form_field = forms.IntegerField if field["type"] == "int" else forms.FloatField
        if field["type"] == "float":
            attrs["step"] = "any"
        return form_field(
            required=False,
            initial=default,
            label=label,
            widget=forms.NumberInput(attrs=attrs),
            help_text=f"{field['minimum']} – {field['maximum']}" + ("; empty: the recipe's" if default is None else ""),
        )
    if "choices" in field:
        choices = [(c, c) for c in field["choices"]]
        if isinstance(default, (list, tuple)):  # a Splits field: several of the choices
            return forms.MultipleChoiceField(
                choices=choices,
                initial=default,
                required=False,
                label=label,
                widget=forms.CheckboxSelectMultiple,
                help_text="None ticked: the default.",
            )
        if default is None:
            return forms.ChoiceField(choices=[("", FROM_RECIPE), *choices], required=False, label=label)
        return forms.ChoiceField(choices=choices, initial=default, label=label)
    return _json(label, default)


def _model_choices(model_kinds: list[str]) -> list[tuple[str, str]]:
    models = ModelVersion.objects.order_by("-created_at", "-id")
    if model_kinds:
        models = models.filter(kind__in=model_kinds)
    return [(str(m.pk), f"{m.name} ({m.kind}{', active' if m.is_active else ''})") for m in models[:CHOICES_LIMIT]]


def _task_choices() -> list[tuple[str, str]]:
    return [(code, f"{code} {name}") for code, name in Task.objects.order_by("code").values_list("code", "name")]


def _references(field: dict) -> dict[str, forms.Field]:
    """The form fields of one reference parameter, by form field name."""
    name, label, help_text, ref = field["name"], _label(field["name"]), field["help"], field["ref"]
    if ref == "tuples":
        return {
            f"{name}_task": forms.ChoiceField(
                choices=NONE + _task_choices(), required=False, label=f"{label}: task", help_text=help_text
            ),
            f"{name}_limit": forms.IntegerField(
                required=False,
                initial=TUPLES_LIMIT,
                label=f"{label}: at most",
                widget=forms.NumberInput(attrs={"min": 1}),
            ),
            f"{name}_ids": forms.CharField(
                required=False, label=f"{label}: or ids", help_text="Tuple ids (instead of a task)."
            ),
        }
    if ref == "model":
        choices = _model_choices(field["model_kinds"])
    elif ref == "dataset_version":
        choices = [
            (str(pk), version)
            for pk, version in DatasetVersion.objects.order_by("-created_at", "-id").values_list("pk", "name")[
                :CHOICES_LIMIT
            ]
        ]
    elif ref == "tasks":
        return {
            name: forms.MultipleChoiceField(
                choices=_task_choices(),
                required=False,
                label=label,
                widget=forms.CheckboxSelectMultiple,
                help_text=help_text,
            )
        }
    elif ref == "path":
        return {name: forms.CharField(required=False, label=label, help_text=help_text)}
    else:
        return {name: _json(label, help_text=help_text)}
    return {name: forms.ChoiceField(choices=NONE + choices, required=False, label=label, help_text=help_text)}


def _ids(text: str) -> list[int]:
    try:
        return [int(item) for item in text.replace(",", " ").split()]
    except ValueError:
        raise forms.ValidationError("tuple ids, separated by commas or spaces") from None


class RunForm(forms.Form):
    def __init__(self, kind: str, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.kind = kind
        self.refs: dict[str, str] = {}  # parameter name → its reference kind
        self.typed: list[str] = []
        for field in kinds.describe(kind):
            if "ref" in field:
                self.refs[field["name"]] = field["ref"]
                self.fields.update(_references(field))
            else:
                self.typed.append(field["name"])
                self.fields[field["name"]] = _typed(field)

    def clean(self):
        cleaned = super().clean()
        for name, ref in self.refs.items():
            if ref == "tuples" and cleaned.get(f"{name}_ids"):
                try:
                    cleaned[f"{name}_ids"] = _ids(cleaned[f"{name}_ids"])
                except forms.ValidationError as exc:
                    self.add_error(f"{name}_ids", exc)
        return cleaned

    def params(self) -> dict:
        """The run's parameters; what was left empty is left out (the service fills in defaults)."""
        data = self.cleaned_data
        params = {name: data[name] for name in self.typed if data.get(name) not in EMPTY}
        for name, ref in self.refs.items():
            if ref == "tuples":
                if data.get(f"{name}_ids"):
                    params[name] = data[f"{name}_ids"]
                elif data.get(f"{name}_task"):
                    params[name] = {"task": data[f"{name}_task"], "limit": data.get(f"{name}_limit") or TUPLES_LIMIT}
            elif data.get(name) not in EMPTY:
                params[name] = int(data[name]) if ref in ID_REFS else data[name]
        return params

    def add_service_errors(self, errors: dict[str, str]) -> None:
        """:class:`RunParamsError` messages, each next to its field (a tuples error next to its task)."""
        for name, message in errors.items():
            field = f"{name}_task" if self.refs.get(name) == "tuples" else name
            self.add_error(field if field in self.fields else None, message)

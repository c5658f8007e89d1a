"""What a form was drawn with: a field shown with its hidden initial (`show_hidden_initial`) posts back the value
the page was drawn with beside the value submitted, so a save can keep what its user did not change as it is
stored now (the desk's and the admin's patient forms, the admin's record rows)."""

from __future__ import annotations

from django.core.exceptions import ValidationError


def drawn_value(form, name: str):
    """The value `name` was drawn with (its hidden initial) as the field reads it; None when the post does not say
    (a script) or says something the field cannot read (a tampered page)."""
    field = form.fields[name]
    hidden, key = field.hidden_widget(), form.add_initial_prefix(name)
    if hidden.value_omitted_from_data(form.data, form.files, key):
        return None
    try:
        return field.to_python(hidden.value_from_datadict(form.data, form.files, key))
    except ValidationError:
        return None

"""Admin form pieces for clinic's models: what Django's admin does not check on its own.

An autocomplete widget that re-renders a posted junk id instead of crashing on it, and the intake inline's
rule that a condition is listed once per area (a conditional unique constraint the formset does not see).
"""

from __future__ import annotations

from django.contrib.admin.widgets import AutocompleteSelect
from django.core.exceptions import ValidationError
from django.forms.models import BaseInlineFormSet


class ForgivingAutocompleteSelect(AutocompleteSelect):
    """Django's autocomplete widget, which looks up the posted value again to show it: a value the related key
    cannot hold (`user=not-a-number`) is shown as nothing chosen, next to the field's "Select a valid choice",
    instead of raising in the look-up."""

    def optgroups(self, name, value, attr=None):
        field = self.field.remote_field.model._meta.get_field(self.field.remote_field.field_name)
        return super().optgroups(name, [v for v in value if _fits(field, v)], attr)


def _fits(field, value) -> bool:
    try:
        field.to_python(value)
    except (ValidationError, TypeError, ValueError):
        return False
    return True


class ConditionOncePerAreaFormSet(BaseInlineFormSet):
    """The intake inline: a condition appears once per treatment area, and once with no area
    (PatientCondition's constraints). Each row is checked against the stored ones by its form; two new rows
    naming the same pair are caught here, as an error on the second, not an IntegrityError."""

    def clean(self) -> None:
        super().clean()
        seen = set()
        for form in self.forms:
            data = getattr(form, "cleaned_data", None)
            if not data or data.get("DELETE") or form.errors or not data.get("condition"):
                continue
            key = (data["condition"].pk, data["area"].pk if data.get("area") else None)
            if key in seen:
                where = f"for {data['area']}" if data.get("area") else "with no area"
                form.add_error("condition", f"{data['condition']} is already listed {where}: list it once.")
            seen.add(key)

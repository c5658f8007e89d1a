"""Forms of the front desk's treatment plan pages (frontdesk/views/plans.py): shape only, the services decide."""

from __future__ import annotations

from django import forms

from clinic.models import Practitioner
from frontdesk.forms import BoundedDateField, FrontdeskForm, _choices
from plans import planner
from plans.models import PlanTemplate

WEEKDAYS = [(0, "Mon"), (1, "Tue"), (2, "Wed"), (3, "Thu"), (4, "Fri"), (5, "Sat"), (6, "Sun")]


class PlanCourseForm(FrontdeskForm):
    template = forms.ChoiceField(label="Course")
    start_from = BoundedDateField(label="From")
    practitioner = forms.ChoiceField(label="Practitioner", required=False)
    weekdays = forms.TypedMultipleChoiceField(
        label="Days", choices=WEEKDAYS, coerce=int, required=False, widget=forms.CheckboxSelectMultiple
    )
    times_of_day = forms.MultipleChoiceField(
        label="Time of day",
        choices=[(part, part.capitalize()) for part in planner.TIMES_OF_DAY],
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )

    def __init__(self, *args, clinic, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["template"].choices = [
            (t.code, t.name) for t in PlanTemplate.objects.for_organisation(clinic.organisation_id).order_by("name")
        ]
        self.fields["practitioner"].choices = _choices(
            Practitioner.objects.filter(clinic=clinic, is_active=True), "Any practitioner"
        )

    def options(self) -> dict:
        data = self.cleaned_data
        return {
            "practitioner_id": data["practitioner"] or None,
            "weekdays": frozenset(data["weekdays"]),
            "times_of_day": frozenset(data["times_of_day"]),
        }


class ReplanForm(FrontdeskForm):
    from_session = forms.IntegerField(min_value=1, max_value=planner.MAX_SESSIONS, widget=forms.HiddenInput)
    start_from = BoundedDateField(label="From")

"""The shapes the patient pages accept; the services decide what is allowed."""

from __future__ import annotations

from datetime import UTC, datetime

from django import forms

from clinic.models import MessageTopic
from core.ids import parse_uuid
from core.plain_text import validate_lines
from core.timeutils import within_years

SLOT_STAMP = "%Y%m%dT%H%MZ"


def slot_key(start_at: datetime, practitioner_id: str) -> str:
    """One offered time as a form value: its UTC start and the practitioner."""
    return f"{start_at.astimezone(UTC):{SLOT_STAMP}}_{practitioner_id}"


def slot_from_key(value: str) -> tuple[datetime, str] | None:
    stamp, _, practitioner_id = (value or "").partition("_")
    try:
        start = datetime.strptime(stamp, SLOT_STAMP).replace(tzinfo=UTC)
    except ValueError:
        return None
    if not within_years(start):  # the list offers the next weeks; 9999-12-31 23:59 overflows a booking's end
        return None
    return (start, practitioner_id) if practitioner_id else None


class FocusOnError(forms.Form):
    """After a refused save the page opens on the first field in error: `autofocus` needs no script, and its
    error is read out with it (the template gives the error the id `<auto_id>_error` that Django's
    aria-describedby names). Recomputed on every error, so a domain error added after validation moves it too."""

    def add_error(self, field, error) -> None:
        super().add_error(field, error)
        first = self.first_error_field
        for name, form_field in self.fields.items():
            if name == first:
                form_field.widget.attrs["autofocus"] = True
            else:
                form_field.widget.attrs.pop("autofocus", None)

    @property
    def first_error_field(self) -> str | None:
        """The first field (in the page's order) with an error; None when only the form as a whole has one."""
        return next((name for name in self.fields if name in self.errors), None)


def drawn_key(appointment) -> str:
    """Where the visit is, and with whom, as a page carries it (`drawn`): a cancel or move sent from a page drawn
    before the clinic changed the visit is refused, and the patient sees the new time first."""
    return slot_key(appointment.start_at, appointment.practitioner_id)


class _Drawn(forms.Form):
    drawn = forms.CharField(required=False, max_length=100, widget=forms.HiddenInput)

    def clean_drawn(self) -> tuple[datetime, str] | None:
        raw = self.cleaned_data["drawn"].strip()
        if not raw:
            return None  # a page drawn before it carried one: no check
        parsed = slot_from_key(raw)
        # A practitioner that is no id is nothing a page draws (`drawn_key`): a tampered form, not a visit moved since.
        practitioner = parse_uuid(parsed[1]) if parsed is not None else None
        if practitioner is None:
            raise forms.ValidationError("This page could not be read. Please open it again from your link.")
        return parsed[0], str(practitioner)


class CancelForm(_Drawn, FocusOnError):
    reason = forms.CharField(
        label="Anything you would like us to know? (optional)",
        required=False,
        max_length=500,
        validators=[validate_lines],
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    field_order = ["reason", "drawn"]


class SlotForm(_Drawn):
    slot = forms.CharField(max_length=100, error_messages={"required": "Choose a time from the list."})

    def clean_slot(self) -> tuple[datetime, str]:
        parsed = slot_from_key(self.cleaned_data["slot"])
        if parsed is None:
            raise forms.ValidationError("That time could not be read. Please choose one from the list.")
        return parsed


class PreferencesForm(FocusOnError):
    """Ticked = wanted. Channels the patient has no address for are left out (and left as they are)."""

    email = forms.BooleanField(required=False, label="E-mail")
    sms = forms.BooleanField(required=False, label="Text messages (SMS)")
    sms_consent = forms.BooleanField(required=False)
    care = forms.BooleanField(required=False, label="Care instructions before and after a treatment")
    reminders = forms.BooleanField(required=False, label="Appointment reminders")

    TOPIC_FIELDS = {"care": MessageTopic.CARE, "reminders": MessageTopic.REMINDERS}

    def __init__(self, *args, has_email: bool, has_phone: bool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not has_email:
            del self.fields["email"]
        if not has_phone:
            del self.fields["sms"]
            del self.fields["sms_consent"]
        # Race condition: the patient may unsubscribe (a link in an e-mail), reply STOP or save their choices on
        # another page (their phone's) while this page is open. The boxes it was drawn with go with it, so that only a
        # box the patient changed here is saved (`changed`, `topic_changes`): muting care texts on an old page must
        # not switch e-mail back on, and switching texts off on it must not unmute what was muted elsewhere.
        for name in ("email", "sms", *self.TOPIC_FIELDS):
            if name in self.fields:
                self.fields[name].show_hidden_initial = True

    def changed(self, name: str) -> bool | None:
        """The box's value where the patient changed it on this page (against what the page was drawn with), else
        None: leave it as it is now. A post that does not say what the page was drawn with: the box's value."""
        if name not in self.fields:
            return None
        if self.add_initial_prefix(name) in self.data and name not in self.changed_data:
            return None
        return self.cleaned_data.get(name)

    def topic_changes(self) -> dict[str, bool]:
        """The kinds of message whose box the patient changed on this page (`changed`), each True where it is now
        muted (unticked), False where unmuted; a kind left as drawn is not named, and stays as it is stored now."""
        changes = {}
        for name, topic in self.TOPIC_FIELDS.items():
            wanted = self.changed(name)
            if wanted is not None:
                changes[topic] = not wanted
        return changes

    def add_domain_error(self, error) -> None:
        self.add_error(error.field if error.field in self.fields else None, error.message)

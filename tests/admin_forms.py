"""The admin's forms as a browser posts them, shared by the tests that save through the admin: a reminder template's
change form as drawn, a new care text's add form, a clinic's change form as drawn. An unticked box is not posted."""

from __future__ import annotations


def _posted(data: dict) -> dict:
    return {k: v for k, v in data.items() if v is not False}


def template_form(obj, **changes) -> dict:
    """The admin's change form for a reminder template `obj`, as drawn, with `changes` made."""
    return _posted(
        {
            "name": obj.name,
            "kind": obj.kind,
            "procedure": obj.procedure_id or "",
            "anchor": obj.anchor,
            "offset_value": obj.offset_value,
            "offset_unit": obj.offset_unit,
            "send_if_late": obj.send_if_late,
            "is_active": obj.is_active,
            "email_subject": obj.email_subject,
            "email_text": obj.email_text,
            "email_html": obj.email_html,
            "attach_ics": obj.attach_ics,
            "sms_text": obj.sms_text,
            "origin": obj.origin,
            "source": obj.source,
            **changes,
        }
    )


def care_text_form(**changes) -> dict:
    """The admin's add form for a new care text: a microneedling pre-care note 72 h before, by e-mail and text, sent
    late where its moment has passed; `changes` made."""
    return _posted(
        {
            "name": "Microneedling, 72 h before",
            "kind": "pre_care",
            "procedure": "microneedling",
            "anchor": "start",
            "offset_value": "-72",
            "offset_unit": "hours",
            "send_if_late": "on",
            "is_active": "on",
            "email_subject": "Three days before your visit",
            "email_text": "Hello {{ patient_first_name }}, stop blood thinners after speaking to your GP.",
            "email_html": "",
            "sms_text": "Three days to go: ask your GP which of your medicines to pause.",
            "origin": "clinic",
            "source": "",
            **changes,
        }
    )


def clinic_form(clinic, **changes) -> dict:
    """The clinic admin's change form as drawn for `clinic`, with `changes`."""
    return {
        "code": clinic.code,
        "organisation": str(clinic.organisation_id),
        "name": clinic.name,
        "timezone": clinic.timezone,
        "country": clinic.country,
        "phone": clinic.phone,
        "address": clinic.address,
        "map_url": clinic.map_url,
        "reply_to_email": clinic.reply_to_email,
        "sender_name": clinic.sender_name,
        "sms_name": clinic.sms_name,
        "logo_url": clinic.logo_url,
        "brand_colour": clinic.brand_colour,
        "cancellation_window_hours": str(clinic.cancellation_window_hours),
        **changes,
    }

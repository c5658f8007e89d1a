from django.apps import AppConfig


class RemindersConfig(AppConfig):
    name = "reminders"
    verbose_name = "Reminders, outbox and webhooks"

    def ready(self) -> None:
        import reminders.checks  # noqa: F401 (registers the channels' checks)
        from clinic import merging, record_changes, setting_checks
        from reminders.consent import merge_consent_record, staff_consent_record
        from reminders.fit import clinic_sms_problems
        from reminders.services import outbox_clinic_settings_saved, outbox_contact_changed, outbox_on_change
        from scheduler import notifications

        # Booking changes reach the outbox through the scheduler's one seam, inside their transaction.
        notifications.subscribe(outbox_on_change)
        # So do changes to how a patient is reached (clinic's seam): what they may now get is planned.
        record_changes.subscribe_contact(outbox_contact_changed)
        # And who switched a channel on or off, when staff or a platform did (the patient's own are recorded where made).
        record_changes.subscribe_contact(staff_consent_record)
        # A merge keeps texts off where one record never agreed to them, whatever START comes after (a seam too).
        merging.subscribe_merge(merge_consent_record)
        # Texts name the clinic: a clinic's name that no text fits is refused when it is saved (reminders.fit).
        setting_checks.subscribe(clinic_sms_problems)
        # A clinic's time zone changed: what is still to go is planned again in the zone as it stands.
        setting_checks.subscribe_saved(outbox_clinic_settings_saved)
        # A spam complaint or unsubscribe an e-mail provider reports (its event webhook, anymail's signal).
        from anymail.signals import tracking

        from reminders.views import email_event

        tracking.connect(email_event, dispatch_uid="reminders.email_event")
        # No SMS may name a diagnosis, procedure or drug: the list is kept under the configuration version
        # (reminders.texts._forbidden_terms), which the catalogue's triggers raise, so a new name counts from the
        # next check (the next batch of sends).

"""A webhook endpoint's events are a set: each named once (the API keeps one named twice once since 5 December 2026;
the model's check, which the admin and every change run, refuses a list with one twice). An endpoint registered
before with an event named twice would fail that check on its next change, on a field its platform did not send:
each event is kept once here, in the order first given. Nothing to undo."""

from django.db import migrations


def each_once(apps, schema_editor):
    WebhookEndpoint = apps.get_model("reminders", "WebhookEndpoint")
    for endpoint in WebhookEndpoint.objects.only("pk", "events").iterator():
        events = endpoint.events if isinstance(endpoint.events, list) else []
        once = list(dict.fromkeys(events))
        if once != events:
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(events=once)


class Migration(migrations.Migration):
    dependencies = [("reminders", "0018_sms_only_aftercare_gives_the_first_week")]
    operations = [migrations.RunPython(each_once, migrations.RunPython.noop)]

"""One day's working periods that overlap or touch, stored before the admin refused them (clinic.forms.
WorkingHoursFormSet), joined into one row: 09:00-13:00 and 13:00-18:00 become 09:00-18:00, so a visit across 13:00 is
within hours everywhere they are read (booking and availability join them when read too; the desk's "Outside working
hours" list reads the rows in SQL). A lunch break (09:00-12:00, 13:00-18:00) is left as it is."""

from collections import defaultdict

from django.db import migrations


def join_touching(apps, schema_editor):
    WorkingHours = apps.get_model("clinic", "WorkingHours")
    days = defaultdict(list)
    for row in WorkingHours.objects.order_by("practitioner_id", "weekday", "start_time", "end_time", "pk"):
        days[(row.practitioner_id, row.weekday)].append(row)
    kept, gone = {}, []
    for rows in days.values():
        current = rows[0]
        for row in rows[1:]:
            if row.start_time <= current.end_time:  # overlaps or touches: one stretch
                if row.end_time > current.end_time:
                    current.end_time = row.end_time
                    kept[current.pk] = current
                gone.append(row.pk)
            else:
                current = row
    WorkingHours.objects.bulk_update(list(kept.values()), ["end_time"], batch_size=1000)
    WorkingHours.objects.filter(pk__in=gone).delete()


class Migration(migrations.Migration):
    dependencies = [("clinic", "0030_reminder_channels_in_one_order")]

    operations = [migrations.RunPython(join_touching, migrations.RunPython.noop)]

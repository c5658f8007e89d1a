"""Every existing clinic becomes an organisation of one (same code and name); its patients join it."""

from django.db import migrations


def organisation_of_one(apps, schema_editor):
    Organisation = apps.get_model("clinic", "Organisation")
    Clinic = apps.get_model("clinic", "Clinic")
    Patient = apps.get_model("clinic", "Patient")
    for clinic in Clinic.objects.filter(organisation=None).order_by("code"):
        organisation, _ = Organisation.objects.get_or_create(code=clinic.code, defaults={"name": clinic.name})
        Clinic.objects.filter(pk=clinic.pk).update(organisation=organisation)
        Patient.objects.filter(clinic=clinic, organisation=None).update(organisation=organisation)


def back(apps, schema_editor):
    # The columns go away with 0010's reversal; nothing to undo row by row.
    pass


class Migration(migrations.Migration):
    dependencies = [
        ("clinic", "0010_organisations"),
    ]

    operations = [migrations.RunPython(organisation_of_one, back)]

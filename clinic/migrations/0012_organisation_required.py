import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("clinic", "0011_organisation_of_one"),
    ]

    operations = [
        migrations.AlterField(
            model_name="clinic",
            name="organisation",
            field=models.ForeignKey(
                blank=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="clinics",
                to="clinic.organisation",
            ),
        ),
        migrations.AlterField(
            model_name="patient",
            name="organisation",
            field=models.ForeignKey(
                blank=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="patients",
                to="clinic.organisation",
            ),
        ),
        migrations.AddIndex(
            model_name="patient",
            index=models.Index(fields=["organisation", "last_name", "first_name"], name="clinic_pati_organis_8531c9_idx"),
        ),
        migrations.AddConstraint(
            model_name="staffmembership",
            constraint=models.UniqueConstraint(
                condition=models.Q(("clinic", None)), fields=("user", "organisation"), name="one_role_per_organisation"
            ),
        ),
        migrations.AddConstraint(
            model_name="staffmembership",
            constraint=models.CheckConstraint(
                condition=models.Q(("clinic__isnull", True)) ^ models.Q(("organisation__isnull", True)),
                name="membership_clinic_or_organisation",
            ),
        ),
    ]

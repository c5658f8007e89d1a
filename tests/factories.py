"""factory_boy factories for the clinic domain."""

from datetime import UTC, datetime, time, timedelta

import factory

from clinic import models


class OrganisationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Organisation
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"org-{n}")
    name = factory.LazyAttribute(lambda o: f"Organisation {o.code}")


class ClinicFactory(factory.django.DjangoModelFactory):
    """A clinic; with no `organisation` given it becomes an organisation of one (same code)."""

    class Meta:
        model = models.Clinic
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"clinic-{n}")
    name = factory.LazyAttribute(lambda o: f"Clinic {o.code}")
    timezone = "Europe/London"


class PractitionerFactory(factory.django.DjangoModelFactory):
    """A practitioner doing the given procedure codes, working Monday to Saturday 09:00-18:00."""

    class Meta:
        model = models.Practitioner
        skip_postgeneration_save = True

    clinic = factory.SubFactory(ClinicFactory)
    name = factory.Sequence(lambda n: f"Practitioner {n:03d}")

    @factory.post_generation
    def procedures(self, create, extracted, **kwargs):
        codes = extracted if extracted is not None else ["botox", "filler", "microneedling", "plasma_pen"]
        self.procedures.add(*models.ProcedureType.objects.filter(code__in=codes))

    @factory.post_generation
    def hours(self, create, extracted, **kwargs):
        days = extracted if extracted is not None else range(6)
        models.WorkingHours.objects.bulk_create(
            models.WorkingHours(practitioner=self, weekday=d, start_time=time(9), end_time=time(18)) for d in days
        )


class PatientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Patient

    clinic = factory.SubFactory(ClinicFactory)
    first_name = factory.Sequence(lambda n: f"Pat{n}")
    last_name = "Example"
    email = factory.LazyAttribute(lambda o: f"{o.first_name.lower()}@example.com")
    phone = "+447911123456"
    reminder_channels = factory.LazyFunction(lambda: ["email"])


class ProcedureRecordFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.ProcedureRecord

    patient = factory.SubFactory(PatientFactory)
    procedure_id = "botox"
    source = models.HistorySource.REPORTED


class AppointmentFactory(factory.django.DjangoModelFactory):
    """An appointment row as the database holds it, written directly: no rules, locks, audit or messages (book
    through scheduler.booking for those). Botox for 30 minutes, confirmed, with its patient's clinic."""

    class Meta:
        model = models.Appointment

    patient = factory.SubFactory(PatientFactory)
    clinic = factory.SelfAttribute("patient.clinic")
    practitioner = factory.SubFactory(PractitionerFactory, clinic=factory.SelfAttribute("..clinic"))
    procedure_id = "botox"
    start_at = datetime(2026, 3, 4, 10, tzinfo=UTC)
    end_at = factory.LazyAttribute(lambda o: o.start_at + timedelta(minutes=30))
    status = models.AppointmentStatus.CONFIRMED


class MedicationCourseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.MedicationCourse

    patient = factory.SubFactory(PatientFactory)
    drug_id = "isotretinoin"


class PatientConditionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.PatientCondition

    patient = factory.SubFactory(PatientFactory)
    status = models.ConditionStatus.ACTIVE

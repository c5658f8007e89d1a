"""Front desk pages for receptionists and clinicians.

Every page below /clinic/<code>/ is scoped to a clinic the user is on the
staff of; anything else is a 404.
"""

from django.urls import include, path

from frontdesk.views import appointments, auth, booking, calendar, merge, patients, plans, rules, schedule

app_name = "frontdesk"

clinic_patterns = [
    path("", schedule.today, name="today"),
    path("schedule/", schedule.schedule, name="schedule"),
    path("calendar/", calendar.calendar, name="calendar"),
    path("calendar/events.json", calendar.calendar_events, name="calendar_events"),
    path("calendar/book/", calendar.calendar_book, name="calendar_book"),
    path("calendar/book/new-patient/", calendar.calendar_register, name="calendar_register"),
    path("calendar/book/<uuid:patient_id>/", calendar.calendar_book_patient, name="calendar_book_patient"),
    path("calendar/sheet/", calendar.day_sheet, name="day_sheet"),
    path("patients/", patients.patient_list, name="patients"),
    path("patients/new/", patients.patient_new, name="patient_new"),
    path("patients/<uuid:patient_id>/", patients.patient_detail, name="patient"),
    path("patients/<uuid:patient_id>/edit/", patients.patient_edit, name="patient_edit"),
    path("patients/<uuid:patient_id>/merge/", merge.patient_merge_view, name="patient_merge"),
    path(
        "patients/<uuid:patient_id>/merge-warnings/check/",
        patients.merge_warning_check_view,
        name="merge_warning_check",
    ),
    path("patients/<uuid:patient_id>/history/", patients.patient_history, name="patient_history"),
    path("patients/<uuid:patient_id>/history/medications/", patients.medication_add, name="medication_add"),
    path(
        "patients/<uuid:patient_id>/history/medications/<uuid:course_id>/end/",
        patients.medication_end,
        name="medication_end",
    ),
    path("patients/<uuid:patient_id>/history/procedures/", patients.procedure_add, name="procedure_add"),
    path("patients/<uuid:patient_id>/book/", booking.book, name="book"),
    path("patients/<uuid:patient_id>/book/confirm/", booking.book_submit, name="book_submit"),
    path("patients/<uuid:patient_id>/plan/", plans.plan_new, name="plan_new"),
    path("patients/<uuid:patient_id>/plan/book/", plans.plan_book, name="plan_book"),
    path("plans/<uuid:plan_id>/", plans.plan_detail, name="plan"),
    path("plans/<uuid:plan_id>/replan/", plans.plan_replan, name="plan_replan"),
    path("plans/<uuid:plan_id>/cancel/", plans.plan_cancel, name="plan_cancel"),
    path("appointments/<uuid:appointment_id>/", appointments.appointment_detail, name="appointment"),
    path("appointments/<uuid:appointment_id>/aftercare/", calendar.aftercare_sheet, name="aftercare"),
    path("appointments/<uuid:appointment_id>/reschedule/", booking.reschedule, name="reschedule"),
    path("appointments/<uuid:appointment_id>/cancel/", appointments.appointment_cancel_view, name="cancel"),
    path("appointments/<uuid:appointment_id>/clear/", appointments.appointment_clear_view, name="clear"),
    path("appointments/<uuid:appointment_id>/complete/", appointments.appointment_complete_view, name="complete"),
    path("appointments/<uuid:appointment_id>/check-in/", appointments.appointment_check_in_view, name="check_in"),
    path("appointments/<uuid:appointment_id>/notes/", appointments.appointment_notes_view, name="notes"),
    path(
        "appointments/<uuid:appointment_id>/messages/<uuid:message_id>/send-again/",
        appointments.message_send_again_view,
        name="message_send_again",
    ),
    path("appointments/<uuid:appointment_id>/no-show/", appointments.appointment_no_show_view, name="no_show"),
    path("rules/", rules.rules, name="rules"),
]

urlpatterns = [
    path("", auth.home, name="home"),
    path("login/", auth.LoginView.as_view(), name="login"),
    path("login/code/", auth.login_code, name="login_code"),
    path("account/two-step/", auth.two_factor, name="two_factor"),
    path("logout/", auth.LogoutView.as_view(), name="logout"),
    path("clinic/<slug:clinic_code>/", include(clinic_patterns)),
]

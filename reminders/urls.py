"""Routes for patients' unsubscribe links, the SMS provider's inbound webhook and private calendar feeds."""

from django.urls import path

from reminders import views

app_name = "reminders"

urlpatterns = [
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
    path("sms/inbound/", views.sms_inbound, name="sms_inbound"),
    path("calendar/<str:token>.ics", views.calendar_feed, name="calendar_feed"),
]

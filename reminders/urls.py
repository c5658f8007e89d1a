"""Routes for patients' unsubscribe links and the SMS provider's inbound webhook."""
from django.urls import path

from reminders import views

app_name = "reminders"

urlpatterns = [
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
    path("sms/inbound/", views.sms_inbound, name="sms_inbound"),
]

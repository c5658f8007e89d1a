"""Routes for patients' unsubscribe links, the SMS provider's inbound webhook, the e-mail providers' event webhooks
and private calendar feeds."""

from anymail import urls as anymail_urls
from django.urls import path
from django.urls.resolvers import RoutePattern

from reminders import views

app_name = "reminders"

urlpatterns = [
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
    path("sms/inbound/", views.sms_inbound, name="sms_inbound"),
    path("sms/status/", views.sms_status, name="sms_status"),
    path("calendar/<str:token>.ics", views.calendar_feed, name="calendar_feed"),
    # Each e-mail provider's event webhook as anymail writes it (`email/postmark/tracking/`, ...), guarded.
    *(
        path(
            f"email/{route.pattern}",
            views.email_events_view(str(route.pattern).partition("/")[0], route.callback),
            name=route.name,
        )
        for route in anymail_urls.urlpatterns
        if isinstance(route.pattern, RoutePattern) and (route.name or "").endswith("_tracking_webhook")
    ),
]

"""The patient's own pages, reached by the signed link in their messages (reminders/links.py)."""

from django.urls import path

from portal import views

app_name = "portal"

urlpatterns = [
    path("<str:token>/", views.manage, name="manage"),
    path("<str:token>/cancel/", views.cancel, name="cancel"),
    path("<str:token>/move/", views.move, name="move"),
    path("<str:token>/move/confirm/", views.move_confirm, name="move_confirm"),
    path("<str:token>/preferences/", views.preferences, name="preferences"),
    path("<str:token>/calendar/", views.calendar, name="calendar"),
]

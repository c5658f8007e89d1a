"""Bench-only routes, included by config/urls.py only when settings.BENCH_ENDPOINTS is true."""

from django.urls import path

from bench.baseline import BaselineBookingApi

app_name = "bench"

urlpatterns = [
    path("baseline/appointments/", BaselineBookingApi.as_view(), name="baseline-appointments"),
]

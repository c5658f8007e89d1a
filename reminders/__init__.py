"""Care reminders, booking notices and platform webhooks, delivered through an outbox.

Booking changes write outbox rows in their own transaction (`services`); a
dispatcher (Celery beat + worker, or the embedded loop) claims due rows and
delivers each one once per claim (`dispatch`, `channels`). See docs/reminders.md.
"""

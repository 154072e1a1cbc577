"""The Celery app: broker and result backend come from gateway.settings (CELERY_*)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")

app = Celery("beluga")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

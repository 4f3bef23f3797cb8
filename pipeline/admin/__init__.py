"""The task admin, registered when Django's admin autodiscovery imports `pipeline.admin`."""

from django.contrib import admin
from django.contrib.admin.exceptions import NotRegistered

from pipeline.admin import task_records  # noqa: F401 - registers TaskRecordAdmin

# django-dramatiq's own task admin lists what its AdminMiddleware writes; newsrec does not use that
# middleware (see pipeline.taskqueue.middleware), so its page would only ever be empty next to this one.
try:
    from django_dramatiq.models import Task as DjangoDramatiqTask

    admin.site.unregister(DjangoDramatiqTask)
except NotRegistered:
    pass

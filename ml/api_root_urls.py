"""``/api/tasks/`` served by ml (see ml/api_tasks.py). config/urls.py includes this module under ``api/`` before
``annotation.api_urls``, so these patterns answer first; annotation's own registration of the same URLs stays as
the fallback of a project without ml."""

from rest_framework.routers import SimpleRouter
from rest_framework.urlpatterns import format_suffix_patterns

from ml.api_tasks import TaskViewSet

router = SimpleRouter()
router.register("tasks", TaskViewSet, basename="task")

urlpatterns = format_suffix_patterns(router.urls)

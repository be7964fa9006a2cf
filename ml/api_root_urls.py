"""ml's endpoints directly under /api/, beside annotation's (see config/urls.py, which includes this before
``annotation.api_urls``): ``/api/tasks/``, whose queue order ml sets (ml/api_tasks.py)."""

from rest_framework.routers import SimpleRouter
from rest_framework.urlpatterns import format_suffix_patterns

from ml.api_tasks import TaskViewSet

router = SimpleRouter()
router.register("tasks", TaskViewSet, basename="task")

urlpatterns = format_suffix_patterns(router.urls)

"""URLs under /api/curation/ (see config/urls.py and curation/api.py)."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from curation import api
from curation import api_agreement, api_audit
from curation import api_gold

router = SimpleRouter()
router.register("consensus", api.ConsensusViewSet, basename="curation-consensus")
router.register("adjudications", api.AdjudicationViewSet, basename="curation-adjudication")

urlpatterns = router.urls
urlpatterns += [
    path("agreement/", api_agreement.AgreementView.as_view(), name="curation-agreement"),
    path("audit/", api_audit.AuditEventListView.as_view(), name="curation-audit"),
]
urlpatterns += [
    path("gold/", api_gold.GoldListView.as_view(), name="curation-gold"),
    path("gold/<int:pair_id>/", api_gold.GoldDetailView.as_view(), name="curation-gold-detail"),
    path("quality/", api_gold.QualityListView.as_view(), name="curation-quality"),
    path("quality/<int:user_id>/restore/", api_gold.QualityRestoreView.as_view(), name="curation-quality-restore"),
]

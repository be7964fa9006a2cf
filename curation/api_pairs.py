"""``/api/pairs/``: annotation's pair endpoints (list, read, create) with the admins' PATCH, which is curation's
because a pair's k decides its consensus (:func:`curation.services.judging.set_pair_k`)."""

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import ValidationError

from annotation import api
from annotation import serializers as s
from annotation.models import Pair
from annotation.services import catalog
from curation.services import judging


class PairViewSet(api.PairViewSet):
    @extend_schema(request=s.PairUpdateSerializer, summary="Set k, retire or un-retire a pair")
    def partial_update(self, request, pk=None, **kwargs):
        pair = self.get_object()
        changes = self.validated(s.PairUpdateSerializer)
        try:
            with transaction.atomic():
                if "k" in changes:
                    pair = judging.set_pair_k(pair.pk, changes["k"], actor=request.user)
                if "status" in changes:
                    pair = catalog.set_pair_retired(
                        pair.pk, changes["status"] == Pair.Status.RETIRED, actor=request.user
                    )
        except ValueError as exc:
            raise ValidationError({"k": [str(exc)]}) from None
        return self.rendered(pair)

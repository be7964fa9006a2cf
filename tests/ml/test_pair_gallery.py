"""The pair gallery with ml's filters (/ml/pairs/, ml/views_gallery.py): curation's gallery plus the generate run
that made a pair's images and disagreement with the active scorer."""

from __future__ import annotations

import pytest

from annotation.models import Image
from ml.models import PairScore, Run
from ml.services import registry
from tests.support.factories import TupleFactory, make_pair, make_user
from tests.support.ml_registry_data import registry_world

pytestmark = pytest.mark.django_db

URL = "/ml/pairs/"


@pytest.fixture
def admin():
    return make_user("boss", "admin")


def shown(client, query: str = "") -> list[int]:
    response = client.get(URL + query)
    assert response.status_code == 200
    return [pair.pk for pair in response.context["page"].object_list]


def generated_pair(run: Run):
    pair = make_pair("RU", tuple=TupleFactory())
    Image.objects.filter(pk=pair.image_wrong_id).update(generator=f"run:{run.pk}:tiny-flux")
    return pair


def test_it_keeps_the_pairs_whose_images_a_run_generated(client, admin):
    world = registry_world(admin)
    other_run = Run.objects.create(kind="generate", status="succeeded", created_by=admin)
    mine, theirs, plain = generated_pair(world.generated), generated_pair(other_run), make_pair("RU")
    client.force_login(admin)
    assert shown(client) == [plain.pk, theirs.pk, mine.pk]
    assert shown(client, f"?run={world.generated.pk}") == [mine.pk]
    assert shown(client, f"?run={other_run.pk}&task=RU") == [theirs.pk]
    assert shown(client, "?task=GR") == [], "curation's filters still apply"


def test_it_keeps_the_pairs_the_active_scorer_prefers_the_wrong_image_of(client, admin):
    world = registry_world(admin)
    agrees, disagrees, unscored = make_pair("RU"), make_pair("RU"), make_pair("RU")
    for pair, says_wrong in ((agrees, False), (disagrees, True)):
        for model in (world.tuned, world.base):  # the inactive scorer's rows must not count
            PairScore.objects.create(
                pair=pair,
                model=model,
                score_correct=0.1,
                score_wrong=0.2,
                probability=0.4,
                uncertainty=0.8,
                disagrees=says_wrong if model == world.tuned else not says_wrong,
            )
    client.force_login(admin)
    assert shown(client, "?scorer_disagrees=on") == [], "no scorer is active yet"
    assert "No scorer is active" in client.get(URL + "?scorer_disagrees=on").content.decode()
    registry.activate_scorer(admin, world.tuned)
    assert shown(client, "?scorer_disagrees=on") == [disagrees.pk]
    assert unscored.pk in shown(client)


def test_a_bad_run_is_a_form_error_and_the_other_filters_still_apply(client, admin):
    make_pair("RU")
    client.force_login(admin)
    response = client.get(URL + "?run=999999&task=RU")
    assert response.status_code == 200
    assert response.context["filter_form"].errors["run"]
    assert len(response.context["page"].object_list) == 1
    assert client.get(URL + "?run=x").status_code == 200
    assert client.get(URL + "?run=x%00y").status_code == 400  # a NUL in a query is refused before the view


def test_reviewers_use_curations_gallery_which_links_admins_here(client, admin):
    reviewer = make_user("rev", "reviewer")
    client.force_login(reviewer)
    assert client.get(URL).status_code == 403
    assert 'id="ml-filters"' not in client.get("/curation/pairs/").content.decode()
    client.force_login(admin)
    page = client.get("/curation/pairs/?task=RU").content.decode()
    assert 'href="/ml/pairs/?task=RU" id="ml-filters"' in page

"""Run and registry pages under /ml/ (see config/urls.py and ml/views.py); schedules: ml/urls_schedules.py."""

from django.urls import path

from ml import views, views_gallery, views_generators, views_leaderboard

app_name = "ml"

urlpatterns = [
    path("runs/", views.run_list, name="run-list"),
    path("runs/new/", views.run_new, name="run-new"),
    path("runs/<int:run_id>/", views.run_detail, name="run-detail"),
    path("runs/<int:run_id>/cancel/", views.run_cancel, name="run-cancel"),
    path("models/", views.model_list, name="model-list"),
    path("models/new/", views.model_new, name="model-new"),
    path("models/compare/", views.model_compare, name="model-compare"),
    path("models/<int:model_id>/", views.model_detail, name="model-detail"),
    path("models/<int:model_id>/activate/", views.model_activate, name="model-activate"),
    path("images/<int:image_id>/origin/", views.image_origin, name="image-origin"),
    path("pairs/", views_gallery.gallery, name="pair-gallery"),
    path("leaderboard/", views_leaderboard.table, name="leaderboard"),
    path("generators/", views_generators.board, name="generator-board"),
    path("runs/<int:run_id>/generations/", views_generators.generations, name="generations"),
    path(
        "runs/<int:run_id>/generations/<str:label>/<int:tuple_index>/<str:kind>/<int:n>.png",
        views_generators.generation_image,
        name="generation-image",
    ),
    path("leaderboard/items/", views_leaderboard.items, name="leaderboard-items"),
]

"""Browser pages: sign-in and sign-out (django.contrib.auth), home, the annotate page, task guides and the
annotator's recent judgements."""

from django.contrib.auth import views as auth_views
from django.urls import path

from annotation import views

urlpatterns = [
    # Django's form views also take PUT as a POST; the login page answers only GET and POST.
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(
            redirect_authenticated_user=True, http_method_names=["get", "head", "post", "options"]
        ),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("annotate/", views.annotate, name="annotate"),
    path("annotate/mine/", views.my_judgements, name="my-judgements"),
    path("guides/<str:code>/", views.guide, name="guide"),
    path("", views.home, name="home"),
]

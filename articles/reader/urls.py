from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from articles.reader import views

app_name = "reader"
urlpatterns = [
    path("", views.for_you, name="for-you"),
    path("for-you/list/", views.for_you_list, name="for-you-list"),
    path("latest/", views.latest, name="latest"),
    path("search/", views.search, name="search"),
    path("articles/<int:pk>/", views.article, name="article"),
    path("articles/<int:pk>/similar/", views.similar, name="similar"),
    path("articles/<int:pk>/interact/", views.interact, name="interact"),
    path("login/", auth_views.LoginView.as_view(template_name="reader/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]

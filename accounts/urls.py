from django.contrib.auth.views import LogoutView
from django.urls import path

from accounts import views

urlpatterns = [
    path("", views.landing, name="landing"),
    path("signup/", views.signup, name="signup"),
    path("login/", views.login_view, name="login"),
    path("logout/", LogoutView.as_view(), name="logout"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("dashboard/keys/new", views.key_create, name="key-create"),
    path("dashboard/keys/<int:key_id>/revoke", views.key_revoke, name="key-revoke"),
    path("dashboard/keys/<int:key_id>/controls", views.key_controls, name="key-controls"),
]

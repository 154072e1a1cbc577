from django.contrib import admin
from django.urls import include, path, re_path

from gateway import views

# The API is served under /v1 and, for clients that expect it, /api/v1.
api_patterns = [
    path("health", views.health, name="health"),
    path("models", views.models_list, name="models-list"),
    path("models/<path:model_id>", views.model_detail, name="models-detail"),
    path("chat/completions", views.chat_completions, name="chat-completions"),
    re_path(r"^.*$", views.api_not_found),
]

urlpatterns = [
    path("v1/", include((api_patterns, "api"), namespace="v1")),
    path("api/v1/", include((api_patterns, "api"), namespace="api-v1")),
    re_path(r"^(api/)?v1$", views.api_not_found),
    path("admin/", admin.site.urls),
    path("usage/", include("billing.urls")),
    path("", include("accounts.urls")),
]

from django.contrib import admin
from django.urls import include, path, re_path

from gateway import account_api, dashboard, metrics, views
from gateway.media.storage import media_file

# The API is served under /v1 and, for clients that expect it, /api/v1.
api_patterns = [
    path("health", views.health, name="health"),
    path("models", views.models_list, name="models-list"),
    path("models/<path:model_id>", views.model_detail, name="models-detail"),
    path("chat/completions", views.chat_completions, name="chat-completions"),
    path("messages", views.messages, name="messages"),
    path("messages/count_tokens", views.messages_count_tokens, name="messages-count-tokens"),
    path("responses", views.responses, name="responses"),
    path("embeddings", views.embeddings, name="embeddings"),
    path("images/generations", views.images_generations, name="images-generations"),
    path("images/edits", views.images_edits, name="images-edits"),
    path("images/tasks/<str:task_id>", views.image_task, name="images-task"),
    path("videos", views.videos, name="videos"),
    path("videos/generations", views.videos_generations, name="videos-generations"),
    path("videos/tasks/<str:video_id>", views.video_detail, name="videos-task"),
    path("videos/<str:video_id>/content", views.video_content, name="videos-content"),
    path("videos/<str:video_id>", views.video_detail, name="videos-detail"),
    path("audio/speech", views.audio_speech, name="audio-speech"),
    path("audio/transcriptions", views.audio_transcriptions, name="audio-transcriptions"),
    path("audio/translations", views.audio_translations, name="audio-translations"),
    path("generation", account_api.generation, name="generation"),
    path("key", account_api.key, name="key"),
    path("auth/key", account_api.key, name="auth-key"),
    path("media/<str:token>", media_file, name="media-file"),
    re_path(r"^.*$", views.api_not_found),
]

# Google's Generative Language API shape (google-genai and other Gemini clients).
gemini_patterns = [
    path("models", views.gemini_models_list, name="gemini-models-list"),
    re_path(r"^models/(?P<model>[^:/]+):(?P<action>[A-Za-z]+)$", views.gemini_model_action, name="gemini-model-action"),
    re_path(r"^models/(?P<model>[^:/]+)$", views.gemini_model_detail, name="gemini-model-detail"),
    re_path(r"^.*$", views.api_not_found),
]

urlpatterns = [
    path("v1/", include((api_patterns, "api"), namespace="v1")),
    path("api/v1/", include((api_patterns, "api"), namespace="api-v1")),
    path("v1beta/", include((gemini_patterns, "gemini"), namespace="v1beta")),
    path("api/v1beta/", include((gemini_patterns, "gemini"), namespace="api-v1beta")),
    re_path(r"^(api/)?v1$", views.api_not_found),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("usage/", include("billing.urls")),
    path("generations/", dashboard.generations, name="generations"),
    path("", include("accounts.urls")),
]

from django.urls import path

from billing import views

# Included at /usage/.
urlpatterns = [
    path("", views.usage, name="usage"),
]

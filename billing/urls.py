from django.urls import path

from billing import views

# Included at /usage/.
urlpatterns = [
    path("", views.usage, name="usage"),
    path("ledger/", views.ledger, name="ledger"),
    path("export.csv", views.usage_export, name="usage-export"),
    path("alerts/", views.spend_alerts, name="spend-alerts"),
]

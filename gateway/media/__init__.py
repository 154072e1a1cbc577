"""Files Beluga generated for customers (images, videos, audio): downloaded from the upstream that made
them (`fetch.py`), kept in Django's default storage and handed out under Beluga's own signed,
expiring URLs (`storage.py`)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "authservice.settings")
application = get_wsgi_application()

# A serving process listens for changes pushed by PostgreSQL (no query per token
# request for a cached client). The server's workers import this module after forking
# (authservice.serve).
from authservice.change_listener import listener  # noqa: E402

listener.start()

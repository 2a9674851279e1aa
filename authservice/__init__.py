"""OCEN Auth Service: the Django project and its OAuth 2.0 provider."""

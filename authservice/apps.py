from django.apps import AppConfig


class AuthServiceConfig(AppConfig):
    name = "authservice"
    verbose_name = "Auth service"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from authservice import checks  # noqa: F401  (registers system checks)

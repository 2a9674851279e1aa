from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "registry"
    verbose_name = "Participant registry"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from registry.api import schema  # noqa: F401  (registers the OpenAPI auth extension)

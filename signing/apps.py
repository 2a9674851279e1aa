from django.apps import AppConfig


class SigningConfig(AppConfig):
    name = "signing"
    verbose_name = "Service signing keys"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from signing import checks  # noqa: F401  (registers system checks)
        from signing.kek import refuse_weak_keys

        refuse_weak_keys()  # a passphrase key-encryption or audit key: the process does not start

"""First-start set-up: a signing key and an administrator, each only if missing."""

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from registry.admin.groups import admin_groups_ensure
from signing.keys import signing_key_ensure


class Command(BaseCommand):
    help = "Create the service signing key and an admin user if they do not exist yet."

    def add_arguments(self, parser):
        parser.add_argument("--admin-username", default="admin")
        parser.add_argument("--no-admin", action="store_true", help="Do not create an admin user.")

    def handle(self, *args, admin_username: str, no_admin: bool, **options):
        key, created = signing_key_ensure()
        verb = "Created" if created else "Found"
        self.stdout.write(f"{verb} signing key kid={key.kid} alg={key.alg}")
        for name, count in admin_groups_ensure().items():
            self.stdout.write(f"{name}: {count} permissions")
        if no_admin:
            return
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write("An admin user exists already; credentials unchanged.")
            return
        password = secrets.token_urlsafe(18)
        User.objects.create_superuser(username=admin_username, email="", password=password)
        self.stdout.write(self.style.SUCCESS("Created admin user (shown once, store it now):"))
        self.stdout.write(f"  username: {admin_username}")
        self.stdout.write(f"  password: {password}")

import pytest
from django.contrib.auth import get_user_model

from registry import services
from tests.keymaterial import ec_key, rsa_key


@pytest.fixture
def admin_user(db):
    return get_user_model().objects.create_superuser("registrar", "registrar@example.org", "x-Very-long-pass-1")


@pytest.fixture
def organisation(admin_user):
    return services.organisation_create(legal_name="Acme Lending Ltd", website="https://acme.example",
                                        contact_email="ops@acme.example", acting_user=admin_user)


@pytest.fixture
def onboard(signing_key, admin_user):
    """Onboard an approved participant with a fresh key; returns (credentials, keypair)."""
    counter = {"n": 0}

    def factory(role: str = "LENDER", name: str | None = None, key=None, material: str | None = None):
        counter["n"] += 1
        key = key or ec_key()
        credentials = services.participant_onboard(
            org_name=name or f"Org {counter['n']}", role=role,
            base_url=f"https://api{counter['n']}.example/ocen", public_key=material or key.public_pem(),
            acting_user=admin_user,
        )
        return credentials, key

    return factory


@pytest.fixture
def rsa_pair():
    return rsa_key()


@pytest.fixture
def audit(db):
    """``trail = audit()`` before a change; ``trail.assert_one(...)`` after it."""
    from tests.audit import AuditTrail

    return AuditTrail

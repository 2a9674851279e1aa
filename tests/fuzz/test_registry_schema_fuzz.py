"""schemathesis against a live server, from the registry API's own OpenAPI schema,
with a valid bearer token: zero 5xx and zero schema violations. Bounded so CI stays
fast (a few dozen generated requests per operation)."""

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from registry import services
from tests.keymaterial import ec_key

pytestmark = pytest.mark.django_db(transaction=True)
EXAMPLES = 40


@pytest.fixture
def registry_token(live_server, settings):
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "ISSUER": live_server.url}
    from authservice.signing_keys import signing_key_ensure

    signing_key_ensure()
    credentials = services.participant_onboard(org_name="Schema Bank", role="LENDER",
                                               base_url="https://schema.example", public_key=ec_key().public_pem(),
                                               acting_user=None)
    services.participant_onboard(org_name="Other Bank", role="LOAN_AGENT", base_url="https://other.example",
                                 public_key=ec_key().public_pem(), acting_user=None)
    response = httpx.post(f"{live_server.url}/oauth2/token", data={"grant_type": "client_credentials"},
                          auth=(credentials.client_id, credentials.client_secret))
    return response.json()["access_token"]


def test_registry_api_has_no_5xx_and_no_schema_violation(live_server, registry_token):
    schema = schemathesis.openapi.from_url(f"{live_server.url}/registry/v1/schema")
    headers = {"Authorization": f"Bearer {registry_token}"}
    failures = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 4  # list, detail, jwks, OCEN reference view

    for operation in operations:
        @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case):
            response = case.call(base_url=live_server.url, headers=headers)
            assert response.status_code < 500, (case.path, case.path_parameters, case.query, response.text[:200])
            case.validate_response(response, headers=headers)

        try:
            check()
        except Exception as exc:  # collect every operation's first failure, then fail once
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)

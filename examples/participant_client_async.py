"""The same call as ``participant_client.py``, from asyncio code: every lookup and
token refresh is awaited, nothing blocks the event loop.

    OCEN_ISSUER=http://127.0.0.1:8000 OCEN_CLIENT_ID=... OCEN_CLIENT_SECRET=... \\
    OCEN_SIGNING_KEY_FILE=agent.pem OCEN_KID=<kid> OCEN_PROVIDER_ID=<lender id> \\
    python examples/participant_client_async.py
"""

import asyncio
import json
import os
import sys

import httpx

from ocen_sdk import OCENAuth, OCENError, RegistryClient, ServiceKeys, TokenManager, load_private_key


async def main() -> int:
    issuer, provider_id = os.environ["OCEN_ISSUER"], os.environ["OCEN_PROVIDER_ID"]
    signing_key = load_private_key(open(os.environ["OCEN_SIGNING_KEY_FILE"]).read())  # noqa: SIM115
    kid = os.environ.get("OCEN_KID")
    secret = os.environ.get("OCEN_CLIENT_SECRET")
    async with httpx.AsyncClient(timeout=10) as http:
        # Discovery once, at start-up (blocking is fine here); everything after is awaited.
        service = ServiceKeys(issuer, async_http=http)
        token_url = service.metadata["token_endpoint"]

        def tokens(resource: str) -> TokenManager:
            credentials = {"client_secret": secret} if secret else {"private_key": signing_key, "kid": kid}
            return TokenManager(token_url=token_url, client_id=os.environ["OCEN_CLIENT_ID"], resource=resource,
                                async_http=http, **credentials)

        registry = RegistryClient(issuer, tokens("urn:ocen:registry"), async_http=http, service_keys=service)
        try:
            provider = await registry.aparticipant(provider_id)
            if provider is None:
                print(f"provider {provider_id} is not in the registry", file=sys.stderr)
                return 1
            print(f"provider {provider_id}: {provider.role}, {provider.status}, {provider.base_url}")
            auth = OCENAuth(tokens=tokens(f"urn:ocen:participant:{provider_id}"), signing_key=signing_key, kid=kid,
                            registry=registry, provider_participant_id=provider_id)
            # Two calls at once: one token fetch, two signed requests, two verified answers.
            responses = await asyncio.gather(*[
                http.post(f"{provider.base_url}/loan-offers", auth=auth, headers={"Content-Type": "application/json"},
                          content=json.dumps({"loanApplicationId": f"APP-{n}", "amount": 50000}).encode())
                for n in (8, 9)])
        except OCENError as exc:
            print(f"refused ({exc.code}): {exc}", file=sys.stderr)
            if getattr(exc, "response", None) is not None:
                print(f"the provider answered HTTP {exc.response.status_code}: {exc.response.text}", file=sys.stderr)
            return 1
        for response in responses:
            print(f"HTTP {response.status_code}, response signature verified: {response.json()}")
        return 0 if all(response.status_code == 200 for response in responses) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

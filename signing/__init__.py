"""OCEN message signing: detached JWS (``signing.jws``), the participant SDK
(``signing.client``), the provider-side Django middleware (``signing.provider``).

``signing.jws``, ``signing.keys``, ``signing.remote`` and ``signing.client`` need no
Django: a participant installs them without the server (``pip install
ocen-authservice[sdk]`` pulls only cryptography, jwcrypto and httpx).
"""

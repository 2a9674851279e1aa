"""The service's own keys and everything it signs: the ``SigningKey`` model and its
lifecycle (``signing.keys``), key-encryption keys and the one key derivation
(``signing.kek``), the JWKS document (``signing.jwks``) and signed registry answers
(``signing.responses``). Every signature goes through the participant SDK's JOSE layer
(``ocen_sdk.jws``). This app imports neither ``authservice`` nor ``registry``: they
import it, and reach its settings through the ``AUTHSERVICE`` dict (``signing.conf``).
"""

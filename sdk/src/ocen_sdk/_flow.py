"""One implementation, two ways to run it: every exchange with the Auth Service is
written once as a generator (a *flow*) that yields what it needs and receives the
answer, and is driven either synchronously (``httpx.Client``) or asynchronously
(``httpx.AsyncClient``).

A flow yields:

- a ``Call``: an HTTP request to send; it receives the ``httpx.Response`` (a transport
  failure is raised inside the flow at the ``yield``, as ``httpx.HTTPError``);
- ``TOKEN``: it receives this participant's current access token, from the driver's
  ``TokenManager`` (one refresh at a time, shared by every caller).

Its return value is the flow's result.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

if TYPE_CHECKING:
    from ocen_sdk.tokens import TokenManager

T = TypeVar("T")


@dataclass(frozen=True)
class Call:
    method: str
    url: str
    headers: dict[str, str] | None = None
    data: dict[str, Any] | None = None
    auth: tuple[str, str] | None = None


TOKEN = object()
Flow = Generator[Any, Any, T]


def run(flow: Flow[T], http: httpx.Client, tokens: TokenManager | None = None) -> T:
    """Drive ``flow`` to its result with a blocking client."""
    try:
        step = next(flow)
        while True:
            if step is TOKEN:
                step = flow.send(_tokens(tokens).get())
                continue
            try:
                response = http.request(step.method, step.url, headers=step.headers, data=step.data,
                                        auth=step.auth)
            except httpx.HTTPError as exc:
                step = flow.throw(exc)
                continue
            step = flow.send(response)
    except StopIteration as done:
        return done.value


async def arun(flow: Flow[T], http: httpx.AsyncClient, tokens: TokenManager | None = None) -> T:
    """Drive ``flow`` to its result with an asynchronous client."""
    try:
        step = next(flow)
        while True:
            if step is TOKEN:
                step = flow.send(await _tokens(tokens).aget())
                continue
            try:
                response = await http.request(step.method, step.url, headers=step.headers, data=step.data,
                                              auth=step.auth)
            except httpx.HTTPError as exc:
                step = flow.throw(exc)
                continue
            step = flow.send(response)
    except StopIteration as done:
        return done.value


def _tokens(tokens: TokenManager | None) -> TokenManager:
    if tokens is None:  # a programming error in this package, not a caller's
        raise RuntimeError("this flow needs an access token but was run without a TokenManager")
    return tokens

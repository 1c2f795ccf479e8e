"""One HTTP exchange with an external system, failures sorted for the caller's error type.

Every connector sends its requests through :func:`exchange`: the whole exchange (connect, send,
answer read) is bounded by ``seconds``, and a failure becomes the connector's own
"unavailable" error through ``unavailable(reason, ambiguous)``. ``ambiguous`` says whether the
request may have reached the system: never when the connection could not be made; when
``write`` is true for a timeout or a connection lost mid-request (the write may have been
applied; the caller looks it up before writing again).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from http.cookies import SimpleCookie
from typing import NamedTuple

import aiohttp
from multidict import CIMultiDictProxy


class Exchange(NamedTuple):
    status: int
    body: bytes
    headers: CIMultiDictProxy[str]
    cookies: SimpleCookie


async def exchange(
    request: AbstractAsyncContextManager[aiohttp.ClientResponse],
    seconds: float,
    *,
    write: bool,
    unavailable: Callable[[str, bool], Exception],
) -> Exchange:
    try:
        async with asyncio.timeout(seconds), request as response:
            body = await response.read()
            return Exchange(response.status, body, response.headers, response.cookies)
    except TimeoutError:
        raise unavailable(f"no response within {seconds:g}s", write) from None
    except aiohttp.ClientConnectorError as exc:  # never connected: nothing was sent
        raise unavailable(f"cannot connect ({type(exc).__name__})", False) from None
    except aiohttp.ClientError as exc:
        raise unavailable(f"connection failed mid-request ({type(exc).__name__})", write) from None

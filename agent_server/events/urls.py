"""Which callback URLs the server may call (no server-side request forgery).

Only ``http`` and ``https`` URLs, and only to globally routable addresses: a host that is or
resolves to a loopback, private, link-local, unspecified, multicast or otherwise reserved
address is refused, unless ``Settings.webhook_allow_private`` (development and tests).

It is checked twice: when the agent sets ``callback_url`` (``check_callback_url``, a
validation error naming the field; a name that does not resolve yet is accepted) and at
every delivery (``resolve_target``), because a name can be re-pointed after the first check
(DNS rebinding). The delivery then connects to the very address that was checked.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from agent_server.kernel.config import Settings
from agent_server.kernel.errors import ValidationFailed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ALLOWED_SCHEMES = ("http", "https")
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


class UnsafeCallback(Exception):
    """A callback URL the server refuses to call; the message says why."""


class Unresolvable(UnsafeCallback):
    """The callback URL's host name does not resolve (now)."""


def refused_reason(address: IPAddress) -> str | None:
    """Why the server will not call ``address``, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return "a loopback address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_private:
        return "a private address"
    if address.is_reserved or not address.is_global:
        return "an address that is not publicly routable"
    return None


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


@dataclass(frozen=True)
class Target:
    """Where one delivery goes: the URL's parts and the addresses checked for it."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[IPAddress, ...]


def _parts(url: str) -> tuple[str, str, int]:
    try:
        split = urlsplit(url)
        port = split.port
    except ValueError as exc:
        raise UnsafeCallback(f"is not a valid URL ({exc})") from None
    scheme = split.scheme.lower()
    if scheme not in ALLOWED_SCHEMES or not split.hostname:
        raise UnsafeCallback("must be an absolute http:// or https:// URL")
    return scheme, split.hostname, port or (443 if scheme == "https" else 80)


async def _resolve(host: str, port: int) -> list[IPAddress]:
    literal = _literal(host)
    if literal is not None:
        return [literal]
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found


def _refuse(host: str, addresses: list[IPAddress]) -> None:
    for address in addresses:
        reason = refused_reason(address)
        if reason is not None:
            shown = host if str(address) == host else f"{host} ({address})"
            raise UnsafeCallback(
                f"points to {reason}: {shown}; use a publicly reachable http(s) URL"
            )


async def resolve_target(url: str, *, allow_private: bool) -> Target:
    """Resolve a callback URL for a delivery; ``UnsafeCallback`` if it may not be called."""
    scheme, host, port = _parts(url)
    if not allow_private and host.lower().rstrip(".") in _LOCAL_NAMES:
        raise UnsafeCallback(f"points to a loopback address: {host}")
    try:
        addresses = await _resolve(host, port)
    except OSError as exc:
        raise Unresolvable(f"the host {host} does not resolve ({exc.strerror or exc})") from None
    if not addresses:
        raise Unresolvable(f"the host {host} does not resolve")
    if not allow_private:
        _refuse(host, addresses)
    return Target(url=url, scheme=scheme, host=host, port=port, addresses=tuple(addresses))


async def check_callback_url(url: str | None, settings: Settings) -> None:
    """Refuse a callback URL the server would not call, naming the ``callback_url`` field.

    A name that does not resolve now is accepted: every delivery checks again.
    """
    if url is None:
        return
    try:
        await resolve_target(url, allow_private=settings.webhook_allow_private)
    except Unresolvable:
        return
    except UnsafeCallback as exc:
        raise ValidationFailed.field("callback_url", str(exc)) from None

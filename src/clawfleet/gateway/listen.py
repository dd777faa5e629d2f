"""How a sandbox reaches its gateway: a listening socket inside the sandbox's network namespace, and the proxy
and CA variables that point the sandbox's tools at it.

The sandbox's network namespace has only ``lo``. :func:`listen_in_netns` creates the proxy's listening socket
*inside* it (the sandbox's setns helper, :func:`clawfleet.sandbox.namespaces.run_in_netns`: only a short-lived
thread moves, the socket stays bound to 127.0.0.1:3128 in the sandbox) and hands it to the asyncio server running
in the gateway's own namespace, where the upstream sockets are opened. No veth, no routable address.
"""

from __future__ import annotations

import socket

from clawfleet.sandbox.namespaces import run_in_netns

__all__ = ["CA_VARIABLES", "PROXY_HOST", "listen_in_netns", "sandbox_env"]

PROXY_HOST = "127.0.0.1"
CA_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO",
                "PIP_CERT")  # fmt: skip


def listen_in_netns(pid: int, port: int = 3128, host: str = PROXY_HOST, backlog: int = 1024) -> socket.socket:
    """A listening TCP socket bound in the network namespace of ``pid`` (root only)."""

    def bind() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(backlog)
        except BaseException:
            sock.close()
            raise
        return sock

    return run_in_netns(pid, bind)


def sandbox_env(port: int, ca_bundle: str) -> dict[str, str]:
    """Proxy and CA variables for the sandbox (both spellings: curl only reads lower-case http_proxy)."""
    proxy = f"http://{PROXY_HOST}:{port}"
    env = {}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[name] = env[name.lower()] = proxy
    env["NO_PROXY"] = env["no_proxy"] = "localhost,127.0.0.1,::1"
    for name in CA_VARIABLES:
        env[name] = ca_bundle
    env["NODE_USE_ENV_PROXY"] = "1"  # node >= 22.21/24.5 honours the proxy variables with this
    return env

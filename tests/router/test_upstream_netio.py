"""The upstream connection pool on the router's own asyncio sockets (clawfleet.router.netio), against a fake
loopback HTTP server: TLS certificates are still checked, timeouts still fire, a slow reader still stops the
socket being read, connections the server closed are not reused, and a provider's cookie is not sent back."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from clawfleet.router import netio
from clawfleet.router.config import Provider
from clawfleet.router.netio import AsyncioBackend
from clawfleet.router.providers import Replica, Upstream

Runner = Callable[[Coroutine[Any, Any, None]], None]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Runner:
    """Each test on asyncio's own loop and on uvloop (what ``router serve`` runs on): their transports differ."""
    if request.param == "uvloop":
        import uvloop

        return uvloop.run
    return asyncio.run


class FakeUpstream:
    """A loopback HTTP/1.1 server whose answers the test scripts; it records each request's head."""

    def __init__(self, answer: Callable[[int], bytes | None], *, close_after: bool = False) -> None:
        self.answer = answer  # request number -> raw response (None: never answer)
        self.close_after = close_after
        self.heads: list[bytes] = []
        self.connections = 0
        self.server: asyncio.AbstractServer | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                self.heads.append(head)
                raw = self.answer(len(self.heads))
                if raw is None:
                    await asyncio.sleep(30)
                    return
                writer.write(raw)
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> int:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0, ssl=ssl_context)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()


def ok(body: bytes = b'{"ok":true}', extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s" % (
        len(body),
        extra,
        body,
    )


def provider(timeout: float = 5.0, connect_timeout: float = 2.0) -> Provider:
    return Provider(
        name="cloud",
        type="openai",
        base_url="http://unused",
        models={},
        local=False,
        timeout=timeout,
        connect_timeout=connect_timeout,
    )


def self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def tls_server_context(tmp: Path) -> tuple[ssl.SSLContext, Path]:
    cert, key = self_signed(tmp)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx, cert


def test_tls_upstream_with_an_untrusted_certificate_is_refused(tmp_path: Path, run: Runner) -> None:
    """Attack: a man in the middle with its own certificate. The handshake fails, no request is sent."""

    async def main() -> None:
        fake = FakeUpstream(lambda n: ok())
        server_ctx, _ = tls_server_context(tmp_path)
        port = await fake.start(server_ctx)
        replica = Replica(provider(), f"https://127.0.0.1:{port}/v1", None)
        try:
            with pytest.raises(httpx.ConnectError):
                await replica.send("/chat/completions", b"{}", {"content-type": "application/json"})
        finally:
            await replica.client.aclose()
            await fake.stop()
        assert fake.heads == []

    run(main())


def test_tls_upstream_with_a_trusted_certificate_answers(tmp_path: Path, run: Runner) -> None:
    """Allowed: the same server, its certificate trusted by the pool's context, answers over TLS."""

    async def main() -> None:
        fake = FakeUpstream(lambda n: ok(b'{"tls":true}'))
        server_ctx, cert = tls_server_context(tmp_path)
        port = await fake.start(server_ctx)
        client_ctx = ssl.create_default_context(cafile=str(cert))
        pool = httpcore.AsyncConnectionPool(ssl_context=client_ctx, network_backend=AsyncioBackend())
        try:
            resp = await pool.request("POST", f"https://127.0.0.1:{port}/v1/x", content=b"{}")
            assert resp.status == 200 and resp.content == b'{"tls":true}'
        finally:
            await pool.aclose()
            await fake.stop()
        assert len(fake.heads) == 1

    run(main())


def test_an_upstream_that_never_answers_times_out(run: Runner) -> None:
    async def main() -> None:
        fake = FakeUpstream(lambda n: None)
        port = await fake.start()
        replica = Replica(provider(timeout=0.3), f"http://127.0.0.1:{port}/v1", None)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        try:
            with pytest.raises(httpx.ReadTimeout):
                await replica.send("/chat/completions", b"{}", {"content-type": "application/json"})
        finally:
            await replica.client.aclose()
            await fake.stop()
        assert 0.25 < loop.time() - t0 < 5

    run(main())


def test_a_slow_reader_stops_the_socket_being_read(run: Runner) -> None:
    """Attack on memory: a provider streams far more than the client reads. The router holds at most about
    the high-water mark unread, and every byte still arrives, in order, once the reader catches up."""
    size = 8 * 1024 * 1024
    body = bytes(range(256)) * (size // 256)

    async def main() -> None:
        fake = FakeUpstream(lambda n: ok(body))
        port = await fake.start()
        replica = Replica(provider(), f"http://127.0.0.1:{port}/v1", None)
        protocols: list[netio._Protocol] = []
        real = netio._Protocol

        def spy() -> netio._Protocol:
            proto = real()
            protocols.append(proto)
            return proto

        netio._Protocol = spy  # type: ignore[misc,assignment]
        try:
            resp = await replica.send("/chat/completions", b"{}", {"content-type": "application/json"})
            await asyncio.sleep(0.5)  # the server keeps sending; nobody reads
            [proto] = protocols
            assert proto.paused_reading
            assert len(proto.buffer) <= netio._HIGH_WATER + 1024 * 1024
            got = b"".join([chunk async for chunk in resp.aiter_raw()])
            await resp.aclose()
            assert got == body
        finally:
            netio._Protocol = real  # type: ignore[misc]
            await replica.client.aclose()
            await fake.stop()

    run(main())


def test_a_connection_the_server_closed_is_not_reused(run: Runner) -> None:
    """The server closes each connection after its answer (without saying so): the next request opens a new one
    and gets its answer, instead of failing on the dead one."""

    async def main() -> None:
        fake = FakeUpstream(lambda n: ok(b'{"n":%d}' % n), close_after=True)
        port = await fake.start()
        replica = Replica(provider(), f"http://127.0.0.1:{port}/v1", None)
        try:
            for n in (1, 2, 3):
                resp = await replica.send("/chat/completions", b"{}", {"content-type": "application/json"})
                assert await resp.aread() == b'{"n":%d}' % n
                await resp.aclose()
                await asyncio.sleep(0.05)  # the close reaches the router's loop
        finally:
            await replica.client.aclose()
            await fake.stop()
        assert fake.connections == 3

    run(main())


def test_a_provider_cookie_is_not_sent_back(run: Runner) -> None:
    """Attack on privacy: a provider sets a cookie on one sandbox's answer; the next request (maybe another
    sandbox's) must not carry it, or the provider could link them. Allowed: both requests are answered, on one
    kept-alive connection, with the headers the router chose."""

    async def main() -> None:
        fake = FakeUpstream(lambda n: ok(extra=b"set-cookie: track=sandbox-a; Path=/\r\n"))
        port = await fake.start()
        replica = Replica(provider(), f"http://127.0.0.1:{port}/v1", None)
        try:
            for _ in range(2):
                resp = await replica.send(
                    "/chat/completions", b'{"a":1}', {"content-type": "application/json", "authorization": "Bearer k"}
                )
                assert resp.status_code == 200 and await resp.aread() == b'{"ok":true}'
                await resp.aclose()
        finally:
            await replica.client.aclose()
            await fake.stop()
        assert len(fake.heads) == 2 and fake.connections == 1
        second = fake.heads[1].lower()
        assert b"cookie" not in second
        assert b"post /v1/chat/completions http/1.1" in second
        assert b"authorization: bearer k" in second and b"content-length: 7" in second

    run(main())


def test_send_puts_the_same_request_on_the_wire_as_the_client(run: Runner) -> None:
    """The direct path (Replica.send) and the client's own (Replica.build + client.send) send the same bytes,
    for the headers the router sends (``Upstream.headers``)."""

    async def main() -> None:
        fake = FakeUpstream(lambda n: ok())
        port = await fake.start()
        replica = Replica(provider(), f"http://127.0.0.1:{port}/v1", None)
        headers = Upstream(provider()).headers({"openai-beta": "assistants=v2"}, translated=False)
        try:
            resp = await replica.send("/chat/completions", b"{}", headers)
            await resp.aread()
            await resp.aclose()
            resp = await replica.client.send(replica.build("/chat/completions", b"{}", headers))
            await resp.aclose()
        finally:
            await replica.client.aclose()
            await fake.stop()
        assert fake.heads[0] == fake.heads[1]

    run(main())


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A loopback port that drops connection attempts, as a broken route does: a listener that never accepts,
    its accept queue already full, so the kernel ignores the next SYN (the attempt hangs, nothing is refused)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.05)
    yield port
    for sock in [*fillers, listener]:
        sock.close()


def fake_resolve(monkeypatch: pytest.MonkeyPatch, ports: list[int]) -> None:
    """The host name resolves to 127.0.0.1 once per port in ``ports``, in that order (FakeResolver)."""

    async def fake_resolver(host: str, port: int) -> list[tuple[Any, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", p)) for p in ports]

    monkeypatch.setattr(netio, "_resolve", fake_resolver)


def test_a_blackholed_first_address_falls_back_to_the_next(
    blackhole: int, monkeypatch: pytest.MonkeyPatch, run: Runner
) -> None:
    """Happy Eyeballs: the first address never answers (a broken IPv6 route), the second connects after the
    250 ms stagger, well within the 2 s connect timeout, instead of the whole timeout being spent on the first."""

    async def main() -> None:
        fake = FakeUpstream(lambda n: ok())
        port = await fake.start()
        fake_resolve(monkeypatch, [blackhole, port])
        replica = Replica(provider(connect_timeout=2.0), f"http://upstream.test:{port}/v1", None)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        try:
            resp = await replica.send("/chat/completions", b"{}", {"content-type": "application/json"})
            assert resp.status_code == 200 and await resp.aread() == b'{"ok":true}'
            await resp.aclose()
        finally:
            await replica.client.aclose()
            await fake.stop()
        assert 0.2 < loop.time() - t0 < 1.0
        assert len(fake.heads) == 1

    run(main())


def test_only_blackholed_addresses_are_a_connect_timeout(
    blackhole: int, monkeypatch: pytest.MonkeyPatch, run: Runner
) -> None:
    async def main() -> None:
        fake_resolve(monkeypatch, [blackhole, blackhole])
        replica = Replica(provider(connect_timeout=0.6), "http://upstream.test:1/v1", None)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        try:
            with pytest.raises(httpx.ConnectTimeout):
                await replica.send("/chat/completions", b"{}", {"content-type": "application/json"})
        finally:
            await replica.client.aclose()
        assert 0.5 < loop.time() - t0 < 2

    run(main())


def test_refused_addresses_are_a_connect_error_at_once(monkeypatch: pytest.MonkeyPatch, run: Runner) -> None:
    """Every address refuses: the next is tried without waiting out the stagger, then the last error is raised."""

    async def main() -> None:
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        port = int(closed.getsockname()[1])
        closed.close()  # nothing listens there: refused
        fake_resolve(monkeypatch, [port, port, port])
        replica = Replica(provider(connect_timeout=2.0), f"http://upstream.test:{port}/v1", None)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        try:
            with pytest.raises(httpx.ConnectError):
                await replica.send("/chat/completions", b"{}", {"content-type": "application/json"})
        finally:
            await replica.client.aclose()
        assert loop.time() - t0 < 0.2

    run(main())


def test_address_families_are_interleaved() -> None:
    six = [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (f"::{n}", 1, 0, 0)) for n in (1, 2, 3)]
    four = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (f"10.0.0.{n}", 1)) for n in (1, 2)]
    order = [info[4][0] for info in netio._interleave([*six, *four])]
    assert order == ["::1", "10.0.0.1", "::2", "10.0.0.2", "::3"]


def test_a_server_that_never_speaks_tls_is_a_connect_timeout(run: Runner) -> None:
    """The server accepts the TCP connection and says nothing: the TLS handshake ends at the connect timeout,
    as httpx.ConnectTimeout (the router logs it as a timeout), not as a ConnectError."""

    async def main() -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                await reader.read()  # until the client gives up
            writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = int(server.sockets[0].getsockname()[1])
        replica = Replica(provider(connect_timeout=0.4), f"https://127.0.0.1:{port}/v1", None)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        try:
            with pytest.raises(httpx.ConnectTimeout):
                await replica.send("/chat/completions", b"{}", {"content-type": "application/json"})
        finally:
            await replica.client.aclose()
            server.close()
        assert 0.3 < loop.time() - t0 < 2

    run(main())


def test_a_cancel_at_the_moment_of_a_read_timeout_is_not_lost(run: Runner) -> None:
    """The read's timer and the task's cancel() both fire before the waiting task wakes (the loop was busy): the
    task ends cancelled, as its canceller expects, not with a ReadTimeout (which a caller might retry)."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        reader = asyncio.ensure_future(netio._wait(fut, 0.1, httpcore.ReadTimeout))
        await asyncio.sleep(0)  # the reader now waits, its timer due at +0.1 s
        loop.call_later(0.05, time.sleep, 0.2)  # the loop blocked past both deadlines below
        loop.call_later(0.15, reader.cancel)
        with pytest.raises(asyncio.CancelledError):
            await reader

    run(main())


def test_a_read_timeout_alone_is_a_read_timeout(run: Runner) -> None:
    async def main() -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with pytest.raises(httpcore.ReadTimeout):
            await netio._wait(fut, 0.05, httpcore.ReadTimeout)

    run(main())


def test_a_streamed_body_is_sent_as_it_comes(run: Runner) -> None:
    """A request body from an async generator: its first piece reaches the server (with the head) while the
    generator still waits, instead of being held until the body ends; the whole body arrives in order."""

    async def main() -> None:
        first_seen = asyncio.Event()
        received = bytearray()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while b"0\r\n\r\n" not in received:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                received.extend(chunk)
                if b"first-piece" in received:
                    first_seen.set()
            writer.write(ok())
            await writer.drain()
            writer.close()

        async def body() -> Any:
            yield b"first-piece"
            await asyncio.wait_for(first_seen.wait(), 2)  # a TimeoutError here: the piece was held back
            yield b"second-piece"

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = int(server.sockets[0].getsockname()[1])
        pool = httpcore.AsyncConnectionPool(network_backend=AsyncioBackend())
        try:
            resp = await pool.request("POST", f"http://127.0.0.1:{port}/v1/x", content=body())
            assert resp.status == 200 and resp.content == b'{"ok":true}'
        finally:
            await pool.aclose()
            server.close()
        head, _, rest = bytes(received).partition(b"\r\n\r\n")
        assert b"transfer-encoding: chunked" in head.lower()
        assert rest.index(b"first-piece") < rest.index(b"second-piece")

    run(main())


def test_a_small_request_goes_out_in_one_send(run: Runner) -> None:
    """Allowed optimisation kept: a bytes body's head and body reach the socket in one write."""

    async def main() -> None:
        fake = FakeUpstream(lambda n: ok())
        port = await fake.start()
        writes: list[bytes] = []
        real = netio.AsyncioStream._send

        async def spy(self: netio.AsyncioStream, buffer: bytes, timeout: float | None) -> None:
            writes.append((self._held or b"") + buffer)
            await real(self, buffer, timeout)

        netio.AsyncioStream._send = spy  # type: ignore[method-assign]
        pool = httpcore.AsyncConnectionPool(network_backend=AsyncioBackend())
        try:
            resp = await pool.request("POST", f"http://127.0.0.1:{port}/v1/x", content=b'{"a":1}')
            assert resp.status == 200
        finally:
            netio.AsyncioStream._send = real  # type: ignore[method-assign]
            await pool.aclose()
            await fake.stop()
        assert len(writes) == 1 and writes[0].startswith(b"POST /v1/x") and writes[0].endswith(b'{"a":1}')

    run(main())


def test_the_replica_pool_runs_on_the_asyncio_backend_with_verified_tls() -> None:
    """The pool Replica puts under httpx (a private attribute of httpx's transport) is httpcore's, on netio's
    backend, with a context that checks certificates and host names; an httpx that renames the attribute fails
    here."""
    replica = Replica(provider(), "https://127.0.0.1:1/v1", None)
    pool = replica.transport._pool  # type: ignore[attr-defined]
    assert isinstance(pool, httpcore.AsyncConnectionPool)
    assert isinstance(pool._network_backend, AsyncioBackend)
    ctx = pool._ssl_context
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    other = Replica(provider(), "https://127.0.0.1:2/v1", None)
    assert other.transport._pool._ssl_context is ctx  # type: ignore[attr-defined]  # one context, made once


def test_an_httpx_without_the_expected_pool_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    from clawfleet.router import providers

    class RenamedPoolTransport:  # a fake httpx transport whose pool attribute is gone
        def __init__(self, **kwargs: Any) -> None:
            self._connection_pool = object()

    monkeypatch.setattr(providers.httpx, "AsyncHTTPTransport", RenamedPoolTransport)
    with pytest.raises(RuntimeError, match="_pool"):
        providers._pool_transport(httpx.Limits())

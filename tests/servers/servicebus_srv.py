"""A local stand-in for the Azure Service Bus *management* API (no emulator can run here).

docs/development.md (Test servers): the admin client always speaks HTTPS, so this is a TLS server
(certificates from ``trustme``; clients trust ``cafile``) that answers the REST API the way
Service Bus does, in ATOM XML:

* ``GET /{queue}?enrich=false&api-version=...``: an ``<entry>`` with a ``QueueDescription``
  (Status, CountDetails with the five counts, ...); a missing entity is a ``200`` with an
  empty ``<feed>``, as the service answers;
* ``GET /{topic}/Subscriptions/{sub}``: a ``SubscriptionDescription`` entry; missing: ``404``
  with the service's ``<Error>`` body;
* ``GET /$Resources/queues?$skip=&$top=`` and ``GET /{topic}/Subscriptions?$skip=&$top=``:
  feeds, paged, with a ``rel="next"`` link while more entries remain;
* every request must carry ``Authorization: SharedAccessSignature sr=...&sig=...&se=...&skn=...``
  signed with the namespace key (HMAC-SHA256 over ``quote_plus(sr) + "\\n" + se``) or
  ``Authorization: Bearer <JWT>`` from a trusted Entra ID issuer (:meth:`trust_issuer`; the
  token endpoint stand-in in ``servers/entra_srv.py``): an RS256 signature checked with
  the issuer's public key, audience ``https://servicebus.azure.net``, ``iss`` of a trusted
  tenant, and ``exp``/``nbf`` in force; otherwise ``401`` with the service's error body.

Tests drive it through the real ``azure-servicebus`` admin client and set entity state per
test under unique names. Every request is recorded (path, query, headers) for assertions.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.server
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, quote_plus, unquote, urlsplit
from xml.sax.saxutils import escape

import attrs
import jwt
import pytest
import trustme

ATOM = "http://www.w3.org/2005/Atom"
SB_NS = "http://schemas.microsoft.com/netservices/2010/10/servicebus/connect"
COUNT_NS = "http://schemas.microsoft.com/netservices/2011/06/servicebus"
KEY_NAME = "RootManageSharedAccessKey"
#: the ``aud`` of Entra ID tokens for Service Bus (scope ``https://servicebus.azure.net//.default``)
AAD_AUDIENCE = "https://servicebus.azure.net"


@attrs.define
class Entity:
    """Runtime state of a queue or subscription."""

    active: int = 0
    dead_letter: int = 0
    scheduled: int = 0
    transfer: int = 0
    transfer_dead_letter: int = 0
    status: str = "Active"

    @property
    def total(self) -> int:
        return (
            self.active
            + self.dead_letter
            + self.scheduled
            + self.transfer
            + self.transfer_dead_letter
        )


@attrs.frozen
class Recorded:
    """One request the stand-in received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    status: int


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _counts(e: Entity) -> str:
    return (
        f'<CountDetails xmlns:d2p1="{COUNT_NS}">'
        f"<d2p1:ActiveMessageCount>{e.active}</d2p1:ActiveMessageCount>"
        f"<d2p1:DeadLetterMessageCount>{e.dead_letter}</d2p1:DeadLetterMessageCount>"
        f"<d2p1:ScheduledMessageCount>{e.scheduled}</d2p1:ScheduledMessageCount>"
        f"<d2p1:TransferMessageCount>{e.transfer}</d2p1:TransferMessageCount>"
        f"<d2p1:TransferDeadLetterMessageCount>{e.transfer_dead_letter}"
        f"</d2p1:TransferDeadLetterMessageCount></CountDetails>"
    )


def queue_description(e: Entity) -> str:
    """A ``QueueDescription`` as the service writes it (element order matters to it)."""
    t = _now()
    return (
        f'<QueueDescription xmlns="{SB_NS}" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">'
        "<LockDuration>PT1M</LockDuration><MaxSizeInMegabytes>1024</MaxSizeInMegabytes>"
        "<RequiresDuplicateDetection>false</RequiresDuplicateDetection>"
        "<RequiresSession>false</RequiresSession>"
        "<DefaultMessageTimeToLive>P10675199DT2H48M5.4775807S</DefaultMessageTimeToLive>"
        "<DeadLetteringOnMessageExpiration>false</DeadLetteringOnMessageExpiration>"
        "<DuplicateDetectionHistoryTimeWindow>PT10M</DuplicateDetectionHistoryTimeWindow>"
        "<MaxDeliveryCount>10</MaxDeliveryCount><EnableBatchedOperations>true</EnableBatchedOperations>"
        f"<SizeInBytes>{e.total * 100}</SizeInBytes><MessageCount>{e.total}</MessageCount>"
        "<IsAnonymousAccessible>false</IsAnonymousAccessible><AuthorizationRules/>"
        f"<Status>{e.status}</Status><CreatedAt>{t}</CreatedAt><UpdatedAt>{t}</UpdatedAt>"
        f"<AccessedAt>{t}</AccessedAt><SupportOrdering>true</SupportOrdering>{_counts(e)}"
        "<AutoDeleteOnIdle>P10675199DT2H48M5.4775807S</AutoDeleteOnIdle>"
        "<EnablePartitioning>false</EnablePartitioning>"
        "<EntityAvailabilityStatus>Available</EntityAvailabilityStatus>"
        "<EnableExpress>false</EnableExpress></QueueDescription>"
    )


def subscription_description(e: Entity) -> str:
    """A ``SubscriptionDescription`` as the service writes it."""
    t = _now()
    return (
        f'<SubscriptionDescription xmlns="{SB_NS}" '
        'xmlns:i="http://www.w3.org/2001/XMLSchema-instance">'
        "<LockDuration>PT1M</LockDuration><RequiresSession>false</RequiresSession>"
        "<DefaultMessageTimeToLive>P10675199DT2H48M5.4775807S</DefaultMessageTimeToLive>"
        "<DeadLetteringOnMessageExpiration>false</DeadLetteringOnMessageExpiration>"
        "<DeadLetteringOnFilterEvaluationExceptions>true</DeadLetteringOnFilterEvaluationExceptions>"
        f"<MessageCount>{e.total}</MessageCount><MaxDeliveryCount>10</MaxDeliveryCount>"
        "<EnableBatchedOperations>true</EnableBatchedOperations>"
        f"<Status>{e.status}</Status><CreatedAt>{t}</CreatedAt><UpdatedAt>{t}</UpdatedAt>"
        f"<AccessedAt>{t}</AccessedAt>{_counts(e)}"
        "<AutoDeleteOnIdle>P10675199DT2H48M5.4775807S</AutoDeleteOnIdle>"
        "<EntityAvailabilityStatus>Available</EntityAvailabilityStatus></SubscriptionDescription>"
    )


def topic_description(e: Entity, subscriptions: int) -> str:
    """A ``TopicDescription``; only its scheduled count and status are meaningful here."""
    t = _now()
    return (
        f'<TopicDescription xmlns="{SB_NS}" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">'
        "<DefaultMessageTimeToLive>P10675199DT2H48M5.4775807S</DefaultMessageTimeToLive>"
        "<MaxSizeInMegabytes>1024</MaxSizeInMegabytes>"
        "<RequiresDuplicateDetection>false</RequiresDuplicateDetection>"
        "<DuplicateDetectionHistoryTimeWindow>PT10M</DuplicateDetectionHistoryTimeWindow>"
        "<EnableBatchedOperations>true</EnableBatchedOperations>"
        f"<SizeInBytes>{e.total * 100}</SizeInBytes>"
        "<FilteringMessagesBeforePublishing>false</FilteringMessagesBeforePublishing>"
        "<IsAnonymousAccessible>false</IsAnonymousAccessible><AuthorizationRules/>"
        f"<Status>{e.status}</Status><CreatedAt>{t}</CreatedAt><UpdatedAt>{t}</UpdatedAt>"
        f"<AccessedAt>{t}</AccessedAt><SupportOrdering>true</SupportOrdering>{_counts(e)}"
        "<AutoDeleteOnIdle>P10675199DT2H48M5.4775807S</AutoDeleteOnIdle>"
        "<EnablePartitioning>false</EnablePartitioning>"
        f"<SubscriptionCount>{subscriptions}</SubscriptionCount>"
        "<EnableSubscriptionPartitioning>false</EnableSubscriptionPartitioning>"
        "<EnableExpress>false</EnableExpress></TopicDescription>"
    )


def _entry(base: str, path: str, title: str, content: str, api: str) -> str:
    t = _now()
    return (
        f'<entry xmlns="{ATOM}"><id>{escape(base)}/{escape(path)}?api-version={api}</id>'
        f'<title type="text">{escape(title)}</title><published>{t}</published>'
        f"<updated>{t}</updated><author><name>standin</name></author>"
        f'<link rel="self" href="{escape(base)}/{escape(path)}?api-version={api}"/>'
        f'<content type="application/xml">{content}</content></entry>'
    )


class ServiceBusStandIn:
    """The stand-in's state and its TLS server. Thread-safe: tests mutate, the server reads."""

    def __init__(self, workdir: Path) -> None:
        self.key = base64.b64encode(uuid.uuid4().bytes + uuid.uuid4().bytes).decode()
        self.key_name = KEY_NAME
        #: ``iss`` -> PEM public key of the Entra ID tenants whose tokens are accepted
        self.issuers: dict[str, bytes] = {}
        self.queues: dict[str, Entity] = {}
        self.topics: dict[str, dict[str, Entity]] = {}
        self.topic_state: dict[str, Entity] = {}
        self.requests: list[Recorded] = []
        self.lock = threading.Lock()
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.cafile = workdir / "standin-ca.pem"
        ca.cert_pem.write_to_path(str(self.cafile))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(context)
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.host = "127.0.0.1"
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    # -- what tests use ----------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"sb://{self.host}:{self.port}/"

    def connection_string(self, key: str | None = None) -> str:
        return (
            f"Endpoint={self.endpoint};SharedAccessKeyName={self.key_name};"
            f"SharedAccessKey={key if key is not None else self.key}"
        )

    def set_queue(self, name: str, **state: int | str) -> None:
        with self.lock:
            self.queues[name] = Entity(**state)  # type: ignore[arg-type]

    def set_subscription(self, topic: str, subscription: str, **state: int | str) -> None:
        with self.lock:
            self.topics.setdefault(topic, {})[subscription] = Entity(**state)  # type: ignore[arg-type]

    def set_topic(self, topic: str, **state: int | str) -> None:
        """The topic's own state (its scheduled count: scheduled messages wait in the topic)."""
        with self.lock:
            self.topics.setdefault(topic, {})
            self.topic_state[topic] = Entity(**state)  # type: ignore[arg-type]

    def trust_issuer(self, issuer: str, public_key_pem: bytes) -> None:
        """Accept bearer tokens from ``issuer`` signed by the key of ``public_key_pem``."""
        with self.lock:
            self.issuers[issuer] = public_key_pem

    def forget_issuers(self) -> None:
        with self.lock:
            self.issuers.clear()

    def requests_under(self, prefix: str) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.path.startswith(prefix)]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    # -- protocol --------------------------------------------------------------------

    def check_auth(self, header: str | None, url: str) -> str | None:
        """``None`` when the Authorization header is valid, else the failure detail."""
        if not header:
            return "MissingToken: The request authorization header was not present."
        if header.startswith("Bearer "):
            return self._check_bearer(header[len("Bearer ") :])
        prefix = "SharedAccessSignature "
        if not header.startswith(prefix):
            return (
                "MalformedToken: The credentials contained in the authorization header "
                "are not in the WRAP format."
            )
        fields = {k: v[0] for k, v in parse_qs(header[len(prefix) :]).items()}
        if {"sr", "sig", "se", "skn"} - fields.keys():
            return "MalformedToken: the token is missing sr, sig, se or skn."
        if fields["skn"] != self.key_name:
            return f"InvalidSignature: unknown key name {fields['skn']}."
        if int(fields["se"]) < time.time():
            return "ExpiredToken: The token is expired."
        audience = fields["sr"].rstrip("/")
        if not url.startswith(audience):
            return "InvalidAudience: The token audience does not match the resource."
        signed = f"{quote_plus(fields['sr'])}\n{fields['se']}".encode()
        expected = base64.b64encode(hmac.new(self.key.encode(), signed, hashlib.sha256).digest())
        if not hmac.compare_digest(expected.decode(), fields["sig"]):
            return "InvalidSignature: The token has an invalid signature."
        return None

    def _check_bearer(self, token: str) -> str | None:
        """An Entra ID access token, checked as Service Bus checks it (no secret shown)."""
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return "MalformedToken: The token is not a valid JWT."
        with self.lock:
            key = self.issuers.get(str(unverified.get("iss")))
        if key is None:
            return "InvalidIssuer: Token issuer is invalid."
        try:
            jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=AAD_AUDIENCE,
                options={"require": ["exp", "nbf", "aud", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            return "ExpiredToken: The token is expired."
        except jwt.InvalidAudienceError:
            return "InvalidAudience: The token audience does not match the resource."
        except jwt.InvalidSignatureError:
            return "InvalidSignature: The token has an invalid signature."
        except jwt.PyJWTError as exc:
            return f"InvalidToken: {type(exc).__name__}."
        return None

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, str, str]:
        """(status, content type, body) for a GET."""
        api = query.get("api-version", [""])[0]
        if not api:
            return (
                400,
                "application/xml",
                _error(400, "The api-version query parameter is required."),
            )
        base = f"https://{self.host}:{self.port}"
        parts = [unquote(p) for p in path.strip("/").split("/") if p]
        entry_type = "application/atom+xml;type=entry;charset=utf-8"
        feed_type = "application/atom+xml;type=feed;charset=utf-8"
        with self.lock:
            if len(parts) == 2 and parts[0] == "$Resources" and parts[1].lower() == "queues":
                items = [
                    _entry(base, name, name, queue_description(e), api)
                    for name, e in sorted(self.queues.items())
                ]
                return 200, feed_type, _feed(base, "$Resources/queues", "Queues", items, query, api)
            if len(parts) == 2 and parts[1].lower() == "subscriptions":
                subs = self.topics.get(parts[0], {})
                items = [
                    _entry(
                        base,
                        f"{parts[0]}/Subscriptions/{name}",
                        name,
                        subscription_description(e),
                        api,
                    )
                    for name, e in sorted(subs.items())
                ]
                return (
                    200,
                    feed_type,
                    _feed(base, path.strip("/"), "Subscriptions", items, query, api),
                )
            if len(parts) == 3 and parts[1].lower() == "subscriptions":
                topic, sub = parts[0], parts[2]
                if topic not in self.topics or sub not in self.topics[topic]:
                    detail = f"Entity 'standin:Topic:{topic}|{sub}' was not found."
                    return 404, "application/xml", _error(404, detail)
                body = _entry(
                    base,
                    path.strip("/"),
                    sub,
                    subscription_description(self.topics[topic][sub]),
                    api,
                )
                return 200, entry_type, body
            if len(parts) == 1 and parts[0] in self.topics:
                state = self.topic_state.get(parts[0], Entity())
                content = topic_description(state, len(self.topics[parts[0]]))
                return 200, entry_type, _entry(base, parts[0], parts[0], content, api)
            if len(parts) == 1 and parts[0] in self.queues:
                return (
                    200,
                    entry_type,
                    _entry(base, parts[0], parts[0], queue_description(self.queues[parts[0]]), api),
                )
        # The service answers a GET of an unknown entity with an empty feed, not a 404.
        empty = (
            f'<feed xmlns="{ATOM}"><title type="text">Publicly Listed Services</title>'
            '<subtitle type="text">This is the list of publicly-listed services '
            "currently available."
            f"</subtitle><id>uuid:{uuid.uuid4()};id=1</id><updated>{_now()}</updated>"
            "<generator>Service Bus 1.1</generator></feed>"
        )
        return 200, feed_type, empty


def _error(code: int, detail: str) -> str:
    tracking = uuid.uuid4()
    return (
        f"<Error><Code>{code}</Code><Detail>{escape(detail)} TrackingId:{tracking}, "
        f"SystemTracker:standin, Timestamp:{_now()}</Detail></Error>"
    )


def _feed(
    base: str, path: str, title: str, items: list[str], query: dict[str, list[str]], api: str
) -> str:
    skip = int(query.get("$skip", ["0"])[0])
    top = min(int(query.get("$top", ["100"])[0]), 100)
    page = items[skip : skip + top]
    self_href = f"{base}/{path}?$skip={skip}&$top={top}&api-version={api}"
    links = f'<link rel="self" href="{escape(self_href)}"/>'
    if skip + top < len(items):
        nxt = f"{base}/{path}?%24skip={skip + top}&%24top={top}&api-version={api}"
        links += f'<link rel="next" href="{escape(nxt)}"/>'
    return (
        f'<feed xmlns="{ATOM}"><title type="text">{title}</title><id>{escape(self_href)}</id>'
        f"<updated>{_now()}</updated>{links}{''.join(page)}</feed>"
    )


def _make_handler(standin: ServiceBusStandIn) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def do_GET(self) -> None:
            split = urlsplit(self.path)
            query = parse_qs(split.query)
            url = f"https://{standin.host}:{standin.port}{split.path}"
            failure = standin.check_auth(self.headers.get("Authorization"), url)
            if failure is not None:
                status, ctype, body = 401, "application/xml", _error(401, failure)
            else:
                status, ctype, body = standin.answer(split.path, query)
            with standin.lock:
                standin.requests.append(
                    Recorded("GET", split.path, query, dict(self.headers.items()), status)
                )
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@contextlib.contextmanager
def running_standin() -> Iterator[ServiceBusStandIn]:
    """A stand-in for the duration of the block (tests that stop it use their own)."""
    with tempfile.TemporaryDirectory(prefix="es-sb-") as tmp:
        try:
            standin = ServiceBusStandIn(Path(tmp))
        except Exception as exc:
            pytest.fail(f"the Service Bus stand-in could not start: {exc!r}", pytrace=False)
        try:
            yield standin
        finally:
            standin.stop()


@pytest.fixture(scope="session")
def servicebus_server() -> Iterator[ServiceBusStandIn]:
    """The session's Service Bus management stand-in (use unique entity names per test)."""
    with running_standin() as standin:
        yield standin

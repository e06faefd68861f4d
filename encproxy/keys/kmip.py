"""Master keys on a KMIP server over mutual TLS (tested with PyKMIP) (docs/KEYS.md §6.3).

A master key is named by the KMIP ``Name`` attribute; each version is one AES-256
symmetric-key object carrying that name, and its version id is the object's KMIP
unique identifier. The current version is the most recent ``Active`` one (by
``Initial Date``). Rotation creates and activates a new object with the same name;
older objects stay Active so that what they wrapped still unwraps.

Wrapping is a server-side ``Encrypt`` (AES-GCM, 96-bit IV, 128-bit tag) with the blob
header and the canonical context as *Authenticated Encryption Additional Data*;
unwrapping is ``Decrypt`` with the same AAD and tag. That field only exists from
KMIP 1.4 on, so encproxy speaks 1.4 and refuses an ``Encrypt`` answer without a tag
(a server that silently ignored the AAD).

The client is encproxy's own: a TLS connection (``PROTOCOL_TLS_CLIENT``: the server
certificate is verified against ``kmip_ca`` *and* its name against ``kmip_host``; TLS
1.2 or newer; client certificate for mutual TLS) per thread, reused across
requests, with connect and read timeouts; PyKMIP is used only to encode and decode
messages. Request bytes are never logged (PyKMIP's own socket wrapper logs them at
DEBUG, data keys included, which is why it is not used).

Errors: no connection, TLS failure, timeout or a server failure is
``KeyProviderUnavailable`` (503); ``Item Not Found`` is ``KMS.NotFoundException``;
a key that is not Active is ``KMS.DisabledException``; a failed ``Decrypt`` is
``KeyUnwrapFailed``.

Layer 3. ``pykmip`` is optional (``pip install 'encproxy[kmip]'``) and imported when a
provider is built.
"""
from __future__ import annotations

import os
import socket
import ssl
import struct
import threading
import time
import warnings
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from encproxy import errors
from encproxy.errors import ConfigError
from encproxy.keys.blob import (
    GCM_NONCE_SIZE,
    GCM_TAG_SIZE,
    Algorithm,
    ProviderKind,
    WrappedKey,
    aad,
    encode_header,
)
from encproxy.keys.provider import (
    BaseProvider,
    Context,
    KeyAdmin,
    KeyAdminError,
    KeyInfo,
    log,
    not_found,
    unavailable,
)

MAX_RESPONSE = 1 << 20
MAX_VERSIONS = 256
_TTLV_HEADER = 8


def _import_kmip() -> Any:
    try:
        with warnings.catch_warnings():  # PyKMIP's own deprecation warnings (SQLAlchemy, ...)
            warnings.simplefilter("ignore")
            from kmip.core import attributes, enums, objects
            from kmip.core.factories.attributes import AttributeFactory
            from kmip.core.messages import contents, messages, payloads
            from kmip.core.utils import BytearrayStream
    except ImportError:
        raise ConfigError("keys", "provider", "provider = kmip needs PyKMIP "
                          "(pip install 'encproxy[kmip]')") from None

    class K:  # a namespace of what this module uses
        pass
    for name, value in {"attributes": attributes, "enums": enums, "objects": objects,
                        "contents": contents, "messages": messages, "payloads": payloads,
                        "BytearrayStream": BytearrayStream,
                        "factory": AttributeFactory()}.items():
        setattr(K, name, value)
    return K


class _Down(Exception):
    """The connection failed; the message is for the log (no request data in it)."""


class _Failed(Exception):
    def __init__(self, reason: Any, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class _Conn:
    sock: ssl.SSLSocket
    pid: int


@dataclass(frozen=True)
class _Version:
    uid: str
    active: bool
    initial_date: int
    order: int  # position in the server's Locate answer (newest first)


class KmipProvider(BaseProvider, KeyAdmin):
    """Server-side AES-GCM wrapping on a KMIP server; see the module docstring."""

    kind = ProviderKind.KMIP

    def __init__(self, host: str, port: int, certfile: str, keyfile: str, ca: str, *,
                 connect_timeout: float = 3.0, timeout: float = 10.0,
                 metadata_ttl: float = 30.0) -> None:
        super().__init__(metadata_ttl)
        self._k = _import_kmip()
        if not host:
            raise ConfigError("keys", "kmip_host", "is required for provider = kmip")
        self.host, self.port = host, port
        self.connect_timeout, self.timeout = connect_timeout, timeout
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        for option, path in (("kmip_ca", ca), ("kmip_certfile", certfile),
                             ("kmip_keyfile", keyfile)):
            if not path or not os.path.isfile(path):
                raise ConfigError("keys", option, f"{path or '(empty)'}: no such file")
        try:
            ctx.load_verify_locations(cafile=ca)
        except (ssl.SSLError, OSError):
            raise ConfigError("keys", "kmip_ca", f"{ca}: not a PEM CA certificate") from None
        try:
            ctx.load_cert_chain(certfile, keyfile)
        except (ssl.SSLError, OSError):
            raise ConfigError("keys", "kmip_certfile",
                              f"{certfile} / {keyfile}: not a matching PEM certificate and "
                              f"key") from None
        self._ssl = ctx
        self._local = threading.local()
        self._version = self._k.enums.KMIPVersion.KMIP_1_4

    def __repr__(self) -> str:
        return f"KmipProvider({self.host}:{self.port})"

    # -- transport -------------------------------------------------------------------------
    def _connect(self) -> _Conn:
        try:
            raw = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as exc:
            raise _Down(f"cannot connect to {self.host}:{self.port} "
                        f"({type(exc).__name__})") from None
        try:
            sock = self._ssl.wrap_socket(raw, server_hostname=self.host)
            sock.settimeout(self.timeout)
        except (OSError, ssl.SSLError) as exc:
            raw.close()
            raise _Down(f"TLS with {self.host}:{self.port} failed "
                        f"({type(exc).__name__}: {getattr(exc, 'reason', None) or ''})") from None
        return _Conn(sock, os.getpid())

    def _recv_exact(self, sock: ssl.SSLSocket, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise _Down("the server closed the connection")
            buf += chunk
        return bytes(buf)

    def _roundtrip(self, conn: _Conn, request: bytes) -> bytes:
        try:
            conn.sock.sendall(request)
            head = self._recv_exact(conn.sock, _TTLV_HEADER)
            (length,) = struct.unpack(">I", head[4:])
            if length > MAX_RESPONSE:
                raise _Down("response too large")
            return head + self._recv_exact(conn.sock, length)
        except (OSError, ssl.SSLError) as exc:
            raise _Down(f"{type(exc).__name__} talking to {self.host}:{self.port}") from None

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None and conn.pid == os.getpid():
            with suppress(OSError):
                conn.sock.close()

    def close(self) -> None:
        self._drop()

    def _call(self, operation: Any, payload: Any, what: str, idempotent: bool = True) -> Any:
        """Send one request; return its response payload, or raise a classified error."""
        k = self._k
        header = k.messages.RequestHeader(protocol_version=k.contents.ProtocolVersion(1, 4),
                                          batch_count=k.contents.BatchCount(1))
        item = k.messages.RequestBatchItem(operation=k.contents.Operation(operation),
                                           request_payload=payload)
        stream = k.BytearrayStream()
        k.messages.RequestMessage(request_header=header, batch_items=[item]).write(
            stream, self._version)
        request = bytes(stream.buffer)
        for attempt in (0, 1):
            conn = getattr(self._local, "conn", None)
            reused = conn is not None and conn.pid == os.getpid()
            try:
                if not reused:
                    conn = self._local.conn = self._connect()
                assert conn is not None
                data = self._roundtrip(conn, request)
                break
            except _Down as exc:
                self._drop()
                if reused and idempotent and attempt == 0:
                    continue  # an idle connection the server had closed: try a fresh one
                raise unavailable(self.name, f"{what}: {exc}") from None
        response = k.messages.ResponseMessage()
        try:
            response.read(k.BytearrayStream(data), self._version)
            result = response.batch_items[0]
        except Exception as exc:  # noqa: BLE001 - any decoding failure
            self._drop()
            raise unavailable(self.name, f"{what}: undecodable response", exc) from None
        status = result.result_status.value
        if status != k.enums.ResultStatus.SUCCESS:
            reason = result.result_reason.value if result.result_reason else None
            message = result.result_message.value if result.result_message else ""
            raise _Failed(reason, str(message)[:200])
        return result.response_payload

    def _classify(self, exc: _Failed, key_id: str, what: str) -> errors.S3Error:
        reasons = self._k.enums.ResultReason
        if exc.reason == reasons.ITEM_NOT_FOUND:
            return not_found(key_id)
        if exc.reason == reasons.PERMISSION_DENIED:
            return errors.KMSDisabled(f"The key '{key_id}' is not active.")
        return unavailable(self.name, f"{what}: server answered {exc.reason} ({exc})")

    # -- KMIP operations ---------------------------------------------------------------------
    def _locate(self, name: str | None) -> list[str]:
        k = self._k
        attrs = [k.factory.create_attribute(k.enums.AttributeType.OBJECT_TYPE,
                                            k.enums.ObjectType.SYMMETRIC_KEY)]
        if name is not None:
            attrs.append(k.factory.create_attribute(k.enums.AttributeType.NAME, name))
        payload = k.payloads.LocateRequestPayload(maximum_items=MAX_VERSIONS * 4,
                                                  attributes=attrs)
        try:
            result = self._call(k.enums.Operation.LOCATE, payload, "locate")
        except _Failed as exc:
            raise self._classify(exc, name or "*", "locate") from None
        return list(result.unique_identifiers or [])

    def _attributes(self, uid: str, names: list[str]) -> dict[str, Any]:
        k = self._k
        payload = k.payloads.GetAttributesRequestPayload(unique_identifier=uid,
                                                         attribute_names=names)
        try:
            result = self._call(k.enums.Operation.GET_ATTRIBUTES, payload, "get attributes")
        except _Failed as exc:
            raise self._classify(exc, uid, "get attributes") from None
        found: dict[str, Any] = {}
        for attribute in result.attributes or []:
            value = attribute.attribute_value
            found.setdefault(attribute.attribute_name.value, []).append(
                getattr(value, "value", value))
        return found

    def _version_list(self, key_id: str) -> list[_Version]:
        states = self._k.enums.State
        out = []
        for order, uid in enumerate(self._locate(key_id)[:MAX_VERSIONS]):
            attrs = self._attributes(uid, ["State", "Initial Date"])
            state = (attrs.get("State") or [None])[0]
            if state in (states.DESTROYED, states.DESTROYED_COMPROMISED):
                continue
            date = (attrs.get("Initial Date") or [0])[0]
            out.append(_Version(uid, state == states.ACTIVE, int(date or 0), order))
        # oldest first; the server lists newest first, which breaks ties in Initial Date
        return sorted(out, key=lambda v: (v.initial_date, -v.order))

    def _describe(self, key_id: str) -> KeyInfo:
        versions = self._version_list(key_id)
        if not versions:
            raise not_found(key_id)
        active = [v for v in versions if v.active]
        current = (active or versions)[-1]
        created = (datetime.fromtimestamp(current.initial_date, UTC)
                   if current.initial_date else None)
        return KeyInfo(key_id, current.uid, tuple(v.uid for v in versions), bool(active),
                       created)

    def _gcm_params(self) -> Any:
        k = self._k
        return k.attributes.CryptographicParameters(
            block_cipher_mode=k.enums.BlockCipherMode.GCM,
            cryptographic_algorithm=k.enums.CryptographicAlgorithm.AES,
            tag_length=GCM_TAG_SIZE)

    def _wrap(self, key_id: str, data_key: bytes, context: Context) -> bytes:
        k = self._k
        uid = self._current(key_id).current_version
        nonce = os.urandom(GCM_NONCE_SIZE)
        header = encode_header(self.kind, Algorithm.AES256_GCM, key_id, uid)
        payload = k.payloads.EncryptRequestPayload(
            unique_identifier=uid, cryptographic_parameters=self._gcm_params(), data=data_key,
            iv_counter_nonce=nonce, auth_additional_data=aad(header, context))
        try:
            result = self._call(k.enums.Operation.ENCRYPT, payload, "encrypt")
        except _Failed as exc:
            self._info.invalidate(key_id)
            raise self._classify(exc, key_id, "encrypt") from None
        tag = result.auth_tag
        if not tag or len(tag) != GCM_TAG_SIZE or len(result.data or b"") != len(data_key):
            raise unavailable(self.name, "encrypt: the server returned no GCM tag; it must "
                              "support KMIP 1.4 authenticated encryption")
        return WrappedKey(self.kind, Algorithm.AES256_GCM, key_id, uid, nonce,
                          bytes(result.data) + bytes(tag)).to_bytes()

    def _unwrap(self, wrapped: WrappedKey, context: Context) -> bytes:
        k = self._k
        if wrapped.algorithm is not Algorithm.AES256_GCM or not wrapped.key_version:
            raise errors.KeyUnwrapFailed("malformed-blob")
        payload = k.payloads.DecryptRequestPayload(
            unique_identifier=wrapped.key_version, cryptographic_parameters=self._gcm_params(),
            data=wrapped.ciphertext[:-GCM_TAG_SIZE], iv_counter_nonce=wrapped.nonce,
            auth_additional_data=aad(wrapped.header(), context),
            auth_tag=wrapped.ciphertext[-GCM_TAG_SIZE:])
        try:
            result = self._call(k.enums.Operation.DECRYPT, payload, "decrypt")
        except _Failed as exc:
            reasons = k.enums.ResultReason
            if exc.reason in (reasons.GENERAL_FAILURE, reasons.CRYPTOGRAPHIC_FAILURE,
                              reasons.INVALID_MESSAGE, reasons.INVALID_FIELD):
                raise errors.KeyUnwrapFailed("authentication") from None
            raise self._classify(exc, wrapped.key_id, "decrypt") from None
        return bytes(result.data or b"")

    # -- management -----------------------------------------------------------------------
    def _create_active(self, key_id: str) -> str:
        k = self._k
        e = k.enums
        template = k.objects.TemplateAttribute(attributes=[
            k.factory.create_attribute(e.AttributeType.CRYPTOGRAPHIC_ALGORITHM,
                                       e.CryptographicAlgorithm.AES),
            k.factory.create_attribute(e.AttributeType.CRYPTOGRAPHIC_LENGTH, 256),
            k.factory.create_attribute(e.AttributeType.CRYPTOGRAPHIC_USAGE_MASK,
                                       [e.CryptographicUsageMask.ENCRYPT,
                                        e.CryptographicUsageMask.DECRYPT]),
            k.factory.create_attribute(e.AttributeType.NAME, key_id)])
        try:
            created = self._call(e.Operation.CREATE, k.payloads.CreateRequestPayload(
                object_type=e.ObjectType.SYMMETRIC_KEY, template_attribute=template),
                "create", idempotent=False)
            uid = created.unique_identifier
            self._call(e.Operation.ACTIVATE, k.payloads.ActivateRequestPayload(
                unique_identifier=k.attributes.UniqueIdentifier(uid)), "activate")
        except _Failed as exc:
            raise self._classify(exc, key_id, "create") from None
        self._info.invalidate(key_id)
        return str(uid)

    def create_key(self, key_id: str) -> KeyInfo:
        key_id = self.normalize(key_id)
        if self._locate(key_id):
            raise KeyAdminError(f"key {key_id!r} already exists")
        self._create_active(key_id)
        return self._describe(key_id)

    def rotate_key(self, key_id: str) -> KeyInfo:
        key_id = self.normalize(key_id)
        versions = self._version_list(key_id)
        if not versions:
            raise not_found(key_id)
        # Versions are ordered by Initial Date, which has one-second resolution: make sure
        # the new one is strictly later than every existing one.
        while int(time.time()) <= max(v.initial_date for v in versions):
            time.sleep(0.05)
        uid = self._create_active(key_id)
        info = self._describe(key_id)
        if info.current_version != uid:
            log.error("kmip: rotated %r to %s but the server orders %s as current",
                      key_id, uid, info.current_version)
        return info

    def list_keys(self) -> list[KeyInfo]:
        names: set[str] = set()
        for uid in self._locate(None)[:MAX_VERSIONS * 4]:
            for name in self._attributes(uid, ["Name"]).get("Name", []):
                text = getattr(getattr(name, "name_value", None), "value", None)
                if isinstance(text, str):
                    names.add(text)
        infos = []
        for name in sorted(names):
            try:
                infos.append(self._describe(self.normalize(name)))
            except errors.KMSNotFound:
                continue
        return infos


__all__ = ["KmipProvider"]

"""Bucket CORS: the pure rules (encproxy/s3/cors.py), the file store's record of them
(FORMAT.md), and the CORS layer in-process over a real FileStoreApp."""
from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree

import pytest
from werkzeug.test import Client
from werkzeug.wrappers import Response

from encproxy import errors
from encproxy.filestore import storefile as sf
from encproxy.filestore.store import FileStore
from encproxy.s3 import cors, xml
from encproxy.s3.acl import canned
from encproxy.s3.cors import VARY, CorsRule
from encproxy.wsgi.apps.filestore import FileStoreApp
from encproxy.wsgi.apps.filestore.common import OWNER_ID
from encproxy.wsgi.apps.filestore.preflight import answer_preflight, response_cors_headers
from encproxy.wsgi.edge.gateway import Gateway
from encproxy.wsgi.edge.preflight import CorsLayer

NS = ' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
GET_ANY = "<AllowedMethod>GET</AllowedMethod><AllowedOrigin>*</AllowedOrigin>"


def document(*rules: str, ns: str = NS) -> bytes:
    return (f"<CORSConfiguration{ns}>"
            + "".join(f"<CORSRule>{r}</CORSRule>" for r in rules)
            + "</CORSConfiguration>").encode()


def rule(methods: tuple[str, ...] = ("GET",), origins: tuple[str, ...] = ("*",),
         **kw: object) -> CorsRule:
    return CorsRule(allowed_methods=methods, allowed_origins=origins, **kw)  # type: ignore[arg-type]


def error_of(call: object) -> errors.S3Error:
    with pytest.raises(errors.S3Error) as exc:
        call()  # type: ignore[operator]
    return exc.value


# -- parsing -----------------------------------------------------------------------------------

def test_parse_keeps_everything_in_order() -> None:
    body = document(
        "<ID>first</ID><AllowedOrigin>https://a.example</AllowedOrigin>"
        "<AllowedOrigin>http://*.b.example</AllowedOrigin><AllowedMethod>PUT</AllowedMethod>"
        "<AllowedMethod>GET</AllowedMethod><AllowedHeader>x-amz-*</AllowedHeader>"
        "<AllowedHeader>Content-Type</AllowedHeader><ExposeHeader>ETag</ExposeHeader>"
        "<ExposeHeader>x-amz-request-id</ExposeHeader><MaxAgeSeconds>3000</MaxAgeSeconds>",
        GET_ANY, ns="")
    first, second = cors.parse_configuration(body)
    assert first == CorsRule(allowed_methods=("PUT", "GET"),
                             allowed_origins=("https://a.example", "http://*.b.example"),
                             allowed_headers=("x-amz-*", "Content-Type"),
                             expose_headers=("ETag", "x-amz-request-id"),
                             id="first", max_age_seconds=3000)
    assert second == rule()
    assert cors.parse_configuration(document(GET_ANY)) == (rule(),)   # namespaced too


def test_render_round_trips() -> None:
    rules = (rule(("GET", "HEAD"), ("https://a.example",), allowed_headers=("*",),
                  expose_headers=("ETag",), id="r1", max_age_seconds=0), rule(("PUT",)))
    rendered = xml.render(cors.configuration_xml(rules))
    assert cors.parse_configuration(rendered) == rules
    root = ElementTree.fromstring(rendered)
    assert [c.tag.split("}")[1] for c in root[0]] == [
        "ID", "AllowedHeader", "AllowedMethod", "AllowedMethod", "AllowedOrigin",
        "ExposeHeader", "MaxAgeSeconds"]


@pytest.mark.parametrize("body,code,message", [
    pytest.param(b"<CORSConfiguration>", "MalformedXML", None, id="not-xml"),
    pytest.param(b"<Other/>", "MalformedXML", None, id="wrong-root"),
    pytest.param(document(), "MalformedXML", None, id="no-rules"),
    pytest.param(document("<AllowedOrigin>*</AllowedOrigin>"), "MalformedXML", None,
                 id="no-method"),
    pytest.param(document("<AllowedMethod>GET</AllowedMethod>"), "MalformedXML", None,
                 id="no-origin"),
    pytest.param(document(GET_ANY + "<Bogus/>"), "MalformedXML", None, id="unknown-element"),
    pytest.param(document(GET_ANY).replace(b"<CORSRule>", b"<Bogus/><CORSRule>"),
                 "MalformedXML", None, id="unknown-top-element"),
    pytest.param(document(GET_ANY + "<ID>a</ID><ID>b</ID>"), "MalformedXML", None,
                 id="two-ids"),
    pytest.param(document(GET_ANY + "<MaxAgeSeconds>-1</MaxAgeSeconds>"), "MalformedXML",
                 None, id="negative-max-age"),
    pytest.param(document(GET_ANY + "<MaxAgeSeconds>ten</MaxAgeSeconds>"), "MalformedXML",
                 None, id="max-age-not-a-number"),
    pytest.param(document("<AllowedMethod>PATCH</AllowedMethod><AllowedOrigin>*</AllowedOrigin>"),
                 "InvalidRequest",
                 "Found unsupported HTTP method in CORS config. Unsupported method is PATCH",
                 id="unsupported-method"),
    pytest.param(document("<AllowedMethod>get</AllowedMethod><AllowedOrigin>*</AllowedOrigin>"),
                 "InvalidRequest",
                 "Found unsupported HTTP method in CORS config. Unsupported method is get",
                 id="lower-case-method"),
    pytest.param(document("<AllowedMethod>GET</AllowedMethod>"
                          "<AllowedOrigin>https://*.*.example</AllowedOrigin>"),
                 "InvalidRequest",
                 'AllowedOrigin "https://*.*.example" can not have more than one wildcard.',
                 id="origin-two-wildcards"),
    pytest.param(document(GET_ANY + "<AllowedHeader>*-amz-*</AllowedHeader>"),
                 "InvalidRequest",
                 'AllowedHeader "*-amz-*" can not have more than one wildcard.',
                 id="header-two-wildcards"),
    pytest.param(document(GET_ANY + "<ExposeHeader>x-*</ExposeHeader>"), "InvalidRequest",
                 'ExposeHeader "x-*" contains wildcard. We currently do not support '
                 "wildcard for ExposeHeader.", id="expose-wildcard"),
    pytest.param(document(*[GET_ANY] * 101), "InvalidRequest",
                 "The number of CORS rules should not exceed allowed limit of 100 rules.",
                 id="101-rules"),
    pytest.param(document(GET_ANY + "<ExposeHeader>" + "x" * 70000 + "</ExposeHeader>"),
                 "MaxMessageLengthExceeded", None, id="over-64-KiB"),
    pytest.param(b'<!DOCTYPE x [<!ENTITY a "b">]><CORSConfiguration/>', "MalformedXML", None,
                 id="dtd"),
])
def test_parse_refuses_as_s3_does(body: bytes, code: str, message: str | None) -> None:
    err = error_of(lambda: cors.parse_configuration(body))
    assert err.code == code
    if message is not None:
        assert err.message == message


def test_100_rules_are_allowed() -> None:
    assert len(cors.parse_configuration(document(*[GET_ANY] * 100))) == 100


# -- matching --------------------------------------------------------------------------------

@pytest.mark.parametrize("pattern,value,expected", [
    ("https://a.example", "https://a.example", True),
    ("https://a.example", "https://a.example.evil", False),
    ("https://a.example", "HTTPS://A.EXAMPLE", False),      # origins are case-sensitive
    ("*", "", True),
    ("*", "anything", True),
    ("*suffix", "foo.suffix", True),
    ("*suffix", "foo.suffix.get", False),
    ("start*end", "startend", True),                       # the wildcard may match nothing
    ("start*end", "start12end", True),
    ("start*end", "0start12end", False),
    ("ab*ba", "aba", False),                               # prefix and suffix may not overlap
    ("prefix*", "prefix", True),
    ("prefix*", "bla.prefix", False),
    ("http://*.example.com", "http://www.example.com", True),
    ("http://*.example.com", "https://www.example.com", False),
])
def test_wildcard_match(pattern: str, value: str, expected: bool) -> None:
    assert cors.wildcard_match(pattern, value) is expected


def test_requested_headers_are_split_trimmed_and_lower_cased() -> None:
    assert cors.requested_headers(None) == ()
    assert cors.requested_headers("") == ()
    assert cors.requested_headers(" Content-Type , X-Amz-Date,,") == ("content-type",
                                                                       "x-amz-date")


RULES = (
    rule(("GET",), ("https://a.example",), id="a-get"),
    rule(("PUT",), ("https://a.example",), allowed_headers=("Content-Type", "x-amz-*"),
         id="a-put"),
    rule(("GET", "HEAD"), ("*",), id="any-get"),
)


@pytest.mark.parametrize("origin,method,headers,expected", [
    pytest.param("https://a.example", "GET", (), "a-get", id="first-rule"),
    pytest.param("https://a.example", "PUT", (), "a-put", id="method-picks-a-later-rule"),
    pytest.param("https://a.example", "PUT", ("content-type", "x-amz-date"), "a-put",
                 id="headers-case-insensitive-and-wildcard"),
    pytest.param("https://a.example", "PUT", ("authorization",), None,
                 id="header-not-allowed"),
    pytest.param("https://a.example", "GET", ("content-type",), None,
                 id="rule-without-allowed-headers-allows-none"),
    pytest.param("https://b.example", "GET", (), "any-get", id="falls-through-to-wildcard"),
    pytest.param("https://b.example", "HEAD", (), "any-get", id="second-method"),
    pytest.param("https://b.example", "PUT", (), None, id="no-rule"),
    pytest.param("https://a.example", "DELETE", (), None, id="method-nowhere"),
])
def test_first_matching_rule(origin: str, method: str, headers: tuple[str, ...],
                             expected: str | None) -> None:
    found = cors.find_rule(RULES, origin, method, headers)
    assert (found.id if found else None) == expected


def test_headers_of_a_specific_origin() -> None:
    r = rule(("GET", "PUT"), ("https://a.example",), allowed_headers=("*",),
             expose_headers=("ETag", "x-amz-meta-a"), max_age_seconds=600)
    assert cors.response_headers(r, "https://a.example", ("content-type", "x-amz-date")) == [
        ("Access-Control-Allow-Origin", "https://a.example"),
        ("Access-Control-Allow-Credentials", "true"),
        ("Access-Control-Allow-Methods", "GET, PUT"),
        ("Access-Control-Allow-Headers", "content-type, x-amz-date"),
        ("Access-Control-Expose-Headers", "ETag, x-amz-meta-a"),
        ("Access-Control-Max-Age", "600"),
        ("Vary", VARY),
    ]


def test_headers_of_the_wildcard_origin() -> None:
    """``*`` in the rule: ``*`` back, and no credentials (AWS's common response headers)."""
    assert cors.response_headers(rule(), "https://x.example") == [
        ("Access-Control-Allow-Origin", "*"),
        ("Access-Control-Allow-Methods", "GET"),
        ("Vary", VARY),
    ]


def test_preflight_headers_and_refusal() -> None:
    request = {"origin": "https://a.example", "access-control-request-method": "PUT",
               "access-control-request-headers": "Content-Type"}
    headers = dict(cors.preflight_headers(RULES, request))
    assert headers["Access-Control-Allow-Origin"] == "https://a.example"
    assert headers["Access-Control-Allow-Methods"] == "PUT"
    assert headers["Access-Control-Allow-Headers"] == "content-type"
    err = error_of(lambda: cors.preflight_headers(
        RULES, {**request, "access-control-request-method": "DELETE"}))
    assert (err.code, err.status) == ("AccessForbidden", 403)
    assert err.message.startswith("CORSResponse: This CORS request is not allowed.")
    assert err.fields["Method"] == "DELETE"


def test_actual_request_headers() -> None:
    """The request's method, unless it carries Access-Control-Request-Method (s3-tests'
    test_cors_origin_response); nothing without Origin or a matching rule."""
    assert cors.actual_headers(RULES, "GET", {}) == []
    assert dict(cors.actual_headers(RULES, "GET", {"origin": "https://a.example"}))[
        "Access-Control-Allow-Methods"] == "GET"
    assert cors.actual_headers(RULES, "DELETE", {"origin": "https://a.example"}) == []
    assert dict(cors.actual_headers(RULES, "POST", {
        "origin": "https://a.example", "access-control-request-method": "PUT"}))[
        "Access-Control-Allow-Methods"] == "PUT"
    assert cors.actual_headers(RULES, "PUT", {"origin": "https://c.example"}) == []


# -- the store's record ----------------------------------------------------------------------

@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    s = FileStore(tmp_path / "store")
    s.create_bucket("bkt")
    return s


def test_store_keeps_replaces_and_deletes_cors(store: FileStore) -> None:
    created = store.bucket("bkt").created
    assert store.bucket("bkt").cors is None
    store.put_bucket_cors("bkt", RULES)
    assert store.bucket("bkt").cors == RULES
    assert store.bucket("bkt").created == created
    store.put_bucket_acl("bkt", canned("public-read", OWNER_ID))   # keeps the CORS rules
    assert store.bucket("bkt").cors == RULES
    store.put_bucket_cors("bkt", (rule(),))                        # keeps the ACL
    assert store.bucket("bkt").acl == canned("public-read", OWNER_ID)
    assert store.bucket("bkt").cors == (rule(),)
    store.put_bucket_cors("bkt", None)
    assert store.bucket("bkt").cors is None
    with pytest.raises(errors.NoSuchBucket):
        store.put_bucket_cors("nope", RULES)
    # Deleting the bucket deletes its rules: a bucket re-created by that name has none.
    store.put_bucket_cors("bkt", RULES)
    store.delete_bucket("bkt")
    store.create_bucket("bkt")
    assert store.bucket("bkt").cors is None


def _rewrite_record(store: FileStore, name: str, **fields: object) -> None:
    path = store.layout.bucket_record(name)
    with open(path, "rb") as f:
        data = f.read()
    h = sf.FIXED.unpack_from(data)
    record = json.loads(data[sf.HEADER_SIZE:sf.HEADER_SIZE + h[3]])
    record.update(fields)
    for key, value in list(record.items()):
        if value is ...:
            del record[key]
    body = sf.encode_fields(record)
    with open(path, "wb") as f:
        f.write(sf.encode_fixed(len(body), 0, sf.MD5_OF_EMPTY, h[6]) + body)


def test_record_without_cors_key_reads_as_none(store: FileStore) -> None:
    """Bucket records written before CORS was kept have no ``cors`` key."""
    _rewrite_record(store, "bkt", cors=...)
    assert store.bucket("bkt").cors is None


@pytest.mark.parametrize("stored", [
    pytest.param("GET", id="not-a-list"),
    pytest.param([{"id": None}], id="missing-keys"),
    pytest.param([], id="no-rules"),
    pytest.param([{"id": None, "allowed_methods": ["PATCH"], "allowed_origins": ["*"],
                   "allowed_headers": [], "expose_headers": [], "max_age_seconds": None}],
                 id="a-rule-s3-refuses"),
    pytest.param([{"id": None, "allowed_methods": "GET", "allowed_origins": ["*"],
                   "allowed_headers": [], "expose_headers": [], "max_age_seconds": None}],
                 id="a-string-for-a-list"),
])
def test_damaged_cors_is_internal_error(store: FileStore, stored: object) -> None:
    _rewrite_record(store, "bkt", cors=stored)
    with pytest.raises(errors.InternalError):
        store.bucket("bkt")


# -- the layer, in-process ---------------------------------------------------------------------

def _stack(store: FileStore, below: object | None = None) -> Client:
    app = FileStoreApp(store, region="us-east-1")
    inner = below if below is not None else app
    layer = CorsLayer(inner,  # type: ignore[arg-type]
                      lambda req: answer_preflight(store, req),
                      lambda req: response_cors_headers(store, req))
    return Client(Gateway(layer, ["s3.local"]))


def test_layer_preflights(store: FileStore) -> None:
    client = _stack(store)
    ask = {"Origin": "https://a.example", "Access-Control-Request-Method": "PUT"}
    resp = client.options("/bkt/k", headers=ask)
    assert resp.status_code == 403
    assert b"CORS is not enabled for this bucket" in resp.data
    store.put_bucket_cors("bkt", RULES)
    resp = client.options("/bkt/k", headers=ask)
    assert resp.status_code == 200
    assert resp.headers["Access-Control-Allow-Origin"] == "https://a.example"
    assert resp.headers["Access-Control-Allow-Methods"] == "PUT"
    assert resp.headers["Vary"] == VARY
    assert resp.data == b""
    resp = client.options("/bkt/k", headers={**ask, "Access-Control-Request-Method": "DELETE"})
    assert resp.status_code == 403
    assert b"This CORS request is not allowed" in resp.data
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert client.options("/nobkt/k", headers=ask).status_code == 404


def test_layer_adds_headers_to_answers_and_errors(store: FileStore) -> None:
    store.put_bucket_cors("bkt", RULES)
    client = _stack(store)
    found = client.get("/bkt/missing", headers={"Origin": "https://a.example"})
    assert found.status_code == 404                      # an error answer gets them too
    assert found.headers["Access-Control-Allow-Origin"] == "https://a.example"
    assert found.headers["Access-Control-Allow-Methods"] == "GET"
    assert found.headers["Access-Control-Allow-Credentials"] == "true"
    other = client.get("/bkt/missing", headers={"Origin": "https://b.example"})
    assert other.headers["Access-Control-Allow-Origin"] == "*"
    for headers in ({}, {"Origin": "https://c.example", "Access-Control-Request-Method": "PUT"}):
        resp = client.get("/bkt/missing", headers=headers)
        assert resp.status_code == 404
        assert not [k for k, _ in resp.headers.items() if k.lower().startswith("access-control")]
    assert "Access-Control-Allow-Origin" not in client.get(
        "/nobkt/k", headers={"Origin": "https://a.example"}).headers
    assert "Access-Control-Allow-Origin" not in client.get(
        "/", headers={"Origin": "https://a.example"}).headers


def test_layer_replaces_cors_headers_from_below(store: FileStore) -> None:
    store.put_bucket_cors("bkt", RULES)

    def below(environ: dict[str, object], start_response: object) -> object:
        resp = Response(b"x", headers={"Access-Control-Allow-Origin": "https://evil.example",
                                       "Vary": "Accept"})
        return resp(environ, start_response)  # type: ignore[arg-type]

    resp = _stack(store, below).get("/bkt/k", headers={"Origin": "https://a.example"})
    assert resp.headers.getlist("Access-Control-Allow-Origin") == ["https://a.example"]
    assert resp.headers.getlist("Vary") == [VARY]


def test_layer_with_a_damaged_record_adds_nothing(store: FileStore) -> None:
    """Rules that cannot be read add no CORS headers, and the request goes on to the
    layers below, which answer it (here: the app below; the real store would refuse it
    for the damaged record, and say so)."""
    store.put_bucket_cors("bkt", RULES)
    _rewrite_record(store, "bkt", cors="damaged")
    calls: list[object] = []

    def below(environ: dict[str, object], start_response: object) -> object:
        calls.append(environ)
        return Response(b"ok")(environ, start_response)  # type: ignore[arg-type]

    client = _stack(store, below)
    assert client.get("/bkt/k").data == b"ok"
    resp = client.get("/bkt/k", headers={"Origin": "https://a.example"})
    assert resp.data == b"ok" and "Access-Control-Allow-Origin" not in resp.headers
    assert len(calls) == 2

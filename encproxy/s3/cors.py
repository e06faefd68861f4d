"""Bucket CORS configurations (PutBucketCors, GetBucketCors) and their evaluation, pure.

A configuration is up to 100 ``CORSRule`` elements.  S3 evaluates it for a
preflight (``OPTIONS``, answered from the rules alone: ``encproxy.s3.preflight``)
and for any other request that carries ``Origin``: the **first** rule whose
``AllowedOrigin``, ``AllowedMethod`` and ``AllowedHeader`` all match decides, and
its answer is a set of ``Access-Control-*`` headers (``response_headers``).

What matches (AWS's "How does Amazon S3 evaluate the CORS configuration";
MinIO's and LocalStack's implementations, the latter checked against AWS):

- ``Origin`` against an ``AllowedOrigin``, case-sensitively; an origin may hold
  one ``*``, which matches any run of characters, none included
  (``start*end`` matches ``startend``: ceph/s3-tests' test_cors_origin_response);
- the method: ``Access-Control-Request-Method`` when the request carries it
  (always, on a preflight), otherwise the request's own method.  S3 treats an
  actual request that carries the preflight headers as it treats the preflight
  (LocalStack's note; s3-tests expects it); browsers never send them on one;
- every name in ``Access-Control-Request-Headers`` against an ``AllowedHeader``,
  case-insensitively, with one ``*`` as for origins.  A rule without
  ``AllowedHeader`` allows no requested header.

The answer (AWS's "Common response headers"): ``Access-Control-Allow-Origin``
is ``*`` when the rule allows any origin (``*``), else the request's origin, and
then ``Access-Control-Allow-Credentials: true``; ``Access-Control-Allow-Methods``
lists the rule's methods; ``Access-Control-Allow-Headers`` the requested headers
(lower-case); ``Access-Control-Expose-Headers`` and ``Access-Control-Max-Age``
the rule's, when it has them; and ``Vary: Origin, Access-Control-Request-Headers,
Access-Control-Request-Method``.  A request that matches no rule gets none of them.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from xml.etree.ElementTree import Element

from encproxy import errors
from encproxy.s3 import xml

MAX_RULES = 100
#: S3 refuses a larger PutBucketCors body (MaxMessageLengthExceeded).
MAX_CONFIGURATION_XML = 64 * 1024
#: The only methods a rule can allow, in S3's words.
METHODS = frozenset({"GET", "PUT", "POST", "DELETE", "HEAD"})
VARY = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
_MAX_AGE_LIMIT = 2**31 - 1      # MaxAgeSeconds is an Integer in S3's model
_RULE_ELEMENTS = frozenset({"ID", "AllowedMethod", "AllowedOrigin", "AllowedHeader",
                            "ExposeHeader", "MaxAgeSeconds"})


@dataclass(frozen=True)
class CorsRule:
    """One ``CORSRule``, as given (order kept: GetBucketCors gives it back)."""

    allowed_methods: tuple[str, ...]
    allowed_origins: tuple[str, ...]
    allowed_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    id: str | None = None
    max_age_seconds: int | None = None

    def __post_init__(self) -> None:
        check_rule(self)


#: A bucket's configuration: its rules in order (never empty).
CorsConfiguration = tuple[CorsRule, ...]


def _invalid(message: str) -> errors.S3Error:
    return errors.InvalidRequest(message)


def _strings(values: object) -> bool:
    return isinstance(values, tuple) and all(isinstance(v, str) for v in values)


def check_rule(rule: CorsRule) -> None:
    """S3's errors for a rule it would refuse (also guards rules read back from a store)."""
    if not (_strings(rule.allowed_methods) and _strings(rule.allowed_origins)
            and _strings(rule.allowed_headers) and _strings(rule.expose_headers)):
        raise errors.MalformedXML()
    if not rule.allowed_origins or not rule.allowed_methods:
        raise errors.MalformedXML()     # each rule names at least one origin and one method
    for method in rule.allowed_methods:
        if method not in METHODS:
            raise _invalid("Found unsupported HTTP method in CORS config. "
                           f"Unsupported method is {method}")
    for origin in rule.allowed_origins:
        if not origin:
            raise errors.MalformedXML()
        if origin.count("*") > 1:
            raise _invalid(f'AllowedOrigin "{origin}" can not have more than one wildcard.')
    for header in rule.allowed_headers:
        if header.count("*") > 1:
            raise _invalid(f'AllowedHeader "{header}" can not have more than one wildcard.')
    for header in rule.expose_headers:
        if "*" in header:
            raise _invalid(f'ExposeHeader "{header}" contains wildcard. We currently do not '
                           "support wildcard for ExposeHeader.")
    if rule.id is not None and not isinstance(rule.id, str):
        raise errors.MalformedXML()
    age = rule.max_age_seconds
    if age is not None and (isinstance(age, bool) or not isinstance(age, int)
                            or not 0 <= age <= _MAX_AGE_LIMIT):
        raise errors.MalformedXML()


def check_configuration(rules: Sequence[CorsRule]) -> CorsConfiguration:
    if not isinstance(rules, tuple) or not all(isinstance(r, CorsRule) for r in rules):
        raise errors.MalformedXML()
    if not rules:
        raise errors.MalformedXML()
    if len(rules) > MAX_RULES:
        raise _invalid("The number of CORS rules should not exceed allowed limit of 100 rules.")
    return rules


# -- the document ----------------------------------------------------------------------------

def parse_configuration(body: bytes) -> CorsConfiguration:
    """The rules of a PutBucketCors body; S3's error for a body it refuses."""
    if len(body) > MAX_CONFIGURATION_XML:
        raise errors.MaxMessageLengthExceeded()
    root = xml.parse(body, max_size=MAX_CONFIGURATION_XML)
    if root.tag != "CORSConfiguration" or any(child.tag != "CORSRule" for child in root):
        raise errors.MalformedXML()
    elements = list(root)
    if not elements:
        raise errors.MalformedXML()
    if len(elements) > MAX_RULES:
        raise _invalid("The number of CORS rules should not exceed allowed limit of 100 rules.")
    return check_configuration(tuple(_rule(el) for el in elements))


def _rule(el: Element) -> CorsRule:
    if any(child.tag not in _RULE_ELEMENTS for child in el):
        raise errors.MalformedXML()

    def texts(tag: str) -> tuple[str, ...]:
        return tuple(child.text or "" for child in el if child.tag == tag)

    ids, ages = texts("ID"), texts("MaxAgeSeconds")
    if len(ids) > 1 or len(ages) > 1:
        raise errors.MalformedXML()
    age: int | None = None
    if ages and ages[0].strip():
        text = ages[0].strip()
        if not text.isascii() or not text.isdigit() or int(text) > _MAX_AGE_LIMIT:
            raise errors.MalformedXML()
        age = int(text)
    return CorsRule(allowed_methods=texts("AllowedMethod"), allowed_origins=texts("AllowedOrigin"),
                    allowed_headers=texts("AllowedHeader"), expose_headers=texts("ExposeHeader"),
                    id=ids[0] if ids and ids[0] else None, max_age_seconds=age)


def configuration_xml(rules: CorsConfiguration) -> xml.Node:
    """The GetBucketCors document (members in the order of S3's CORSRule shape)."""
    root = xml.Node("CORSConfiguration")
    for rule in rules:
        node = root.add("CORSRule")
        if rule.id is not None:
            node.add("ID", rule.id)
        for tag, values in (("AllowedHeader", rule.allowed_headers),
                            ("AllowedMethod", rule.allowed_methods),
                            ("AllowedOrigin", rule.allowed_origins),
                            ("ExposeHeader", rule.expose_headers)):
            for value in values:
                node.add(tag, value)
        if rule.max_age_seconds is not None:
            node.add("MaxAgeSeconds", rule.max_age_seconds)
    return root


# -- evaluation ------------------------------------------------------------------------------

def wildcard_match(pattern: str, value: str) -> bool:
    """``pattern`` with at most one ``*`` (any run of characters, none included)."""
    if "*" not in pattern:
        return pattern == value
    prefix, suffix = pattern.split("*", 1)
    return len(value) >= len(prefix) + len(suffix) and value.startswith(prefix) \
        and value.endswith(suffix)


def requested_headers(value: str | None) -> tuple[str, ...]:
    """The names in ``Access-Control-Request-Headers``, lower-case, in order."""
    if not value:
        return ()
    return tuple(name.strip().lower() for name in value.split(",") if name.strip())


def _allows_header(rule: CorsRule, name: str) -> bool:
    return any(wildcard_match(allowed.lower(), name) for allowed in rule.allowed_headers)


def find_rule(rules: CorsConfiguration, origin: str, method: str,
              headers: Sequence[str] = ()) -> CorsRule | None:
    """The first rule that allows ``origin``, ``method`` and every requested header
    (``headers``: lower-case, as ``requested_headers`` gives them); None if none does."""
    for rule in rules:
        if method not in rule.allowed_methods:
            continue
        if not any(wildcard_match(allowed, origin) for allowed in rule.allowed_origins):
            continue
        if all(_allows_header(rule, name) for name in headers):
            return rule
    return None


def response_headers(rule: CorsRule, origin: str,
                     headers: Sequence[str] = ()) -> list[tuple[str, str]]:
    """The CORS headers S3 answers with when ``rule`` matched."""
    out: list[tuple[str, str]] = []
    if "*" in rule.allowed_origins:
        out.append(("Access-Control-Allow-Origin", "*"))
    else:
        out += [("Access-Control-Allow-Origin", origin),
                ("Access-Control-Allow-Credentials", "true")]
    out.append(("Access-Control-Allow-Methods", ", ".join(rule.allowed_methods)))
    if headers:
        out.append(("Access-Control-Allow-Headers", ", ".join(headers)))
    if rule.expose_headers:
        out.append(("Access-Control-Expose-Headers", ", ".join(rule.expose_headers)))
    if rule.max_age_seconds is not None:
        out.append(("Access-Control-Max-Age", str(rule.max_age_seconds)))
    out.append(("Vary", VARY))
    return out


def preflight_headers(rules: CorsConfiguration,
                      request: Mapping[str, str]) -> list[tuple[str, str]]:
    """The headers of a valid preflight's 200 (``request``: lower-case names, already
    checked by ``preflight.check_preflight``); AccessForbidden when no rule allows it."""
    origin = request["origin"]
    method = request["access-control-request-method"]
    wanted = requested_headers(request.get("access-control-request-headers"))
    rule = find_rule(rules, origin, method, wanted)
    if rule is None:
        raise not_allowed(method)
    return response_headers(rule, origin, wanted)


def actual_headers(rules: CorsConfiguration, method: str,
                   request: Mapping[str, str]) -> list[tuple[str, str]]:
    """The CORS headers of the answer to a request other than a preflight
    (``request``: lower-case names); none without ``Origin`` or a matching rule."""
    origin = request.get("origin")
    if not origin:
        return []
    method = request.get("access-control-request-method") or method
    wanted = requested_headers(request.get("access-control-request-headers"))
    rule = find_rule(rules, origin, method, wanted)
    return [] if rule is None else response_headers(rule, origin, wanted)


def not_allowed(method: str) -> errors.S3Error:
    """S3's answer to a preflight that no rule allows (Method and ResourceType as
    LocalStack records AWS's)."""
    return errors.AccessForbidden(
        "CORSResponse: This CORS request is not allowed. This is usually because the "
        "evalution of Origin, request method / Access-Control-Request-Method or "
        "Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
        Method=method, ResourceType="OBJECT")

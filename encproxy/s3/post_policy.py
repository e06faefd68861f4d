"""POST Object: the policy, its signature and conditions, and the PutObject a form
describes (pure; the clock and the credentials are passed in).

A browser upload is authorized by its form, not by headers: ``policy`` is a
base64 JSON document (``expiration`` and ``conditions``), signed with SigV2
(``AWSAccessKeyId``, ``signature``: base64 HMAC-SHA1 of the policy) or SigV4
(``x-amz-algorithm``, ``x-amz-credential``, ``x-amz-date``,
``x-amz-signature``: hex HMAC-SHA256 of the policy under the SigV4 signing
key).  Every condition must hold, and every field of the form must be named
by a condition, except the signature's own fields, ``x-ignore-*`` and the
``x-amz-checksum-*`` digests of the file (which only constrain the upload).
The bucket counts as a field (the request's bucket, whatever a ``bucket``
field says); the key is checked after ``${filename}`` is replaced.  Field and
condition names are case-insensitive; values are compared exactly.

Errors are S3's: a malformed policy is InvalidPolicyDocument (400); an
expired policy, a failed condition or a field no condition names is
AccessDenied "Invalid according to Policy: ..." (403); the file's size
outside ``content-length-range`` is EntityTooLarge / EntityTooSmall (400).
"""
from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from encproxy import errors, sigv2, sigv4
from encproxy.s3 import xml

MAX_POLICY_BYTES = 64 * 1024
V4_ALGORITHM = sigv4.ALGORITHM
FILENAME_VARIABLE = "${filename}"

#: Fields no condition has to name: the signature's own, and the file's digests.
EXEMPT_FIELDS = frozenset({"policy", "signature", "awsaccesskeyid", "x-amz-signature", "file"})
EXEMPT_PREFIXES = ("x-ignore-", "x-amz-checksum-")
#: Fields that authenticate the form; never stored as headers.
AUTH_FIELDS = frozenset({"policy", "signature", "awsaccesskeyid", "x-amz-signature",
                         "x-amz-algorithm", "x-amz-credential", "x-amz-date",
                         "x-amz-security-token"})
#: Fields that become the PutObject's headers of the same name (besides x-amz-*).
CONTENT_FIELDS = ("cache-control", "content-type", "content-disposition", "content-encoding",
                  "content-language", "expires")

_EXPIRATION_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,9})?Z\Z",
    re.ASCII)
_INTEGER_RE = re.compile(r"-?[0-9]{1,19}\Z", re.ASCII)


# -- the policy document ---------------------------------------------------------------

@dataclass(frozen=True)
class Condition:
    """``eq`` or ``starts-with`` on one field (lower-case name, without ``$``)."""

    op: str
    field: str
    value: str

    def holds(self, actual: str) -> bool:
        return actual == self.value if self.op == "eq" else actual.startswith(self.value)

    def quoted(self) -> str:
        """As AWS quotes a failed condition: ``["eq", "$key", "a"]``."""
        return json.dumps([self.op, "$" + self.field, self.value])


@dataclass(frozen=True)
class Policy:
    expiration: datetime
    conditions: tuple[Condition, ...]
    min_length: int = 0
    max_length: int | None = None


def _invalid(detail: str) -> errors.S3Error:
    return errors.InvalidPolicyDocument(f"Invalid Policy: {detail}")


def decode_policy(encoded: str) -> Policy:
    """Parse the base64 policy field as S3 does; InvalidPolicyDocument for any problem."""
    if len(encoded) > MAX_POLICY_BYTES:
        raise _invalid("Policy document is too large.")
    try:
        raw = base64.b64decode("".join(encoded.split()), validate=True)
        document = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise _invalid("Invalid JSON.") from None
    if not isinstance(document, dict):
        raise _invalid("Invalid JSON.")
    # The top-level names are case-sensitive (ceph/s3-tests: EXPIRATION, CONDITIONS).
    if "expiration" not in document:
        raise _invalid("Policy missing expiration.")
    expiration = _expiration(document["expiration"])
    if "conditions" not in document:
        raise _invalid("Policy missing conditions.")
    if not isinstance(document["conditions"], list):
        raise _invalid("Policy conditions must be a list.")
    conditions: list[Condition] = []
    lengths: list[tuple[int, int]] = []
    for item in document["conditions"]:
        if isinstance(item, dict):
            conditions.append(_simple_condition(item))
        elif isinstance(item, list):
            parsed = _array_condition(item)
            if isinstance(parsed, Condition):
                conditions.append(parsed)
            else:
                lengths.append(parsed)
        else:
            raise _invalid(f"Invalid Condition: {json.dumps(item)[:200]}")
    return Policy(expiration, tuple(conditions),
                  max((lo for lo, _ in lengths), default=0),
                  min((hi for _, hi in lengths), default=None))


def _expiration(value: object) -> datetime:
    match = _EXPIRATION_RE.match(value) if isinstance(value, str) else None
    if match is None:
        raise _invalid(f"Invalid 'expiration' value: '{str(value)[:64]}'")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        raise _invalid(f"Invalid 'expiration' value: '{value}'") from None
    fraction = match.group(7)
    if fraction:
        moment = moment.replace(microsecond=int(fraction[1:7].ljust(6, "0")))
    return moment


def _simple_condition(item: Mapping[str, object]) -> Condition:
    if len(item) != 1:
        raise _invalid("Invalid Simple-Condition: Simple-Conditions must have exactly one "
                       "property specified.")
    ((name, value),) = item.items()
    if not isinstance(value, str):
        raise _invalid(f"Invalid Simple-Condition: value of {name!r} must be a string.")
    return Condition("eq", name.lower().removeprefix("$"), value)


def _array_condition(item: list[object]) -> Condition | tuple[int, int]:
    text = json.dumps(item)[:200]
    if not item or not isinstance(item[0], str):
        raise _invalid(f"Invalid Condition: {text}")
    op = item[0].lower()
    if op == "content-length-range":
        if len(item) != 3:
            raise _invalid(f"Invalid content-length-range condition: {text}")
        bounds = [_length_bound(v, text) for v in item[1:]]
        if bounds[0] > bounds[1]:
            raise _invalid(f"Invalid content-length-range condition: {text}")
        return bounds[0], bounds[1]
    if op not in ("eq", "starts-with") or len(item) != 3:
        raise _invalid(f"Invalid Condition: {text}")
    name, value = item[1], item[2]
    if not isinstance(name, str) or not name.startswith("$") or len(name) < 2 \
            or not isinstance(value, str):
        raise _invalid(f"Invalid Condition: {text}")
    return Condition(op, name[1:].lower(), value)


def _length_bound(value: object, text: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) \
            or not _INTEGER_RE.match(str(value)) or int(value) < 0:
        raise _invalid(f"Invalid content-length-range condition: {text}")
    return int(value)


# -- who signed it ---------------------------------------------------------------------

def _missing(name: str) -> errors.S3Error:
    return errors.InvalidArgument(
        f"Bucket POST must contain a field named '{name}'.  If it is specified, please "
        "check the order of the fields.", ArgumentName=name, ArgumentValue="")


def _field_error(detail: str, name: str) -> Callable[[str], errors.S3Error]:
    def make(problem: str) -> errors.S3Error:
        return errors.InvalidArgument(f"{detail}; {problem}", ArgumentName=name)
    return make


def is_anonymous(fields: Mapping[str, str]) -> bool:
    """Whether a form carries no authentication at all (no policy, signature, access key,
    credential, algorithm, date or token): an anonymous upload, as S3 takes one into a
    bucket whose ACL lets everyone write."""
    return not any(name in fields for name in AUTH_FIELDS)


def authenticate(fields: Mapping[str, str], secret_lookup: sigv4.SecretLookup, *,
                 region: str | None, allow_sigv2: bool) -> str:
    """The access key whose secret signed the form's policy; raises S3's errors.

    ``fields`` maps lower-case field names to values.  A form without a policy
    is AccessDenied here: a form without any authentication field at all
    (``is_anonymous``) is the caller's to allow or refuse before it gets here.
    """
    policy = fields.get("policy")
    algorithm = fields.get("x-amz-algorithm")
    if policy is None:
        raise errors.AccessDenied()
    if algorithm is not None and algorithm != V4_ALGORITHM:
        raise sigv4.unsupported_authorization(
            "AWS4-ECDSA-P256-SHA256" if "ECDSA" in algorithm else algorithm)
    if algorithm is None:
        if not allow_sigv2:
            raise sigv4.unsupported_authorization(sigv2.SCHEME)
        access_key = fields.get("awsaccesskeyid")
        provided = fields.get("signature")
        if access_key is None:
            raise _missing("AWSAccessKeyId")
        if provided is None:
            raise _missing("Signature")
        secret = secret_lookup(access_key)
        if secret is None:
            raise errors.InvalidAccessKeyId(AWSAccessKeyId=access_key)
        expected = sigv2.post_policy_signature(secret, policy)
        if not sigv2.signatures_equal(expected, provided):
            raise errors.SignatureDoesNotMatch(AWSAccessKeyId=access_key, StringToSign=policy)
        return access_key
    for name in ("x-amz-credential", "x-amz-date", "x-amz-signature"):
        if name not in fields:
            raise _missing(name)
    credential = sigv4.parse_credential(
        fields["x-amz-credential"], _field_error("Error parsing the X-Amz-Credential field",
                                                 "x-amz-credential"))
    date = fields["x-amz-date"]
    if not re.fullmatch(r"[0-9]{8}T[0-9]{6}Z", date, re.ASCII) or date[:8] != credential.date:
        raise errors.InvalidArgument(
            f"X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\" and its "
            f"date the credential's, \"{credential.date}\".", ArgumentName="x-amz-date",
            ArgumentValue=date[:64])
    if region is not None and credential.region != region:
        raise errors.InvalidArgument(
            f"Error parsing the X-Amz-Credential field; the region '{credential.region}' is "
            f"wrong; expecting '{region}'", ArgumentName="x-amz-credential", Region=region)
    secret = secret_lookup(credential.access_key)
    if secret is None:
        raise errors.InvalidAccessKeyId(AWSAccessKeyId=credential.access_key)
    key = sigv4.signing_key(secret, credential.date, credential.region, credential.service)
    expected = sigv4.signature(key, policy)
    if not sigv4.signatures_equal(expected, fields["x-amz-signature"]):
        raise errors.SignatureDoesNotMatch(AWSAccessKeyId=credential.access_key,
                                           StringToSign=policy)
    return credential.access_key


# -- what the form asks for ------------------------------------------------------------

def object_key(fields: Mapping[str, str], filename: str | None) -> str:
    """The key field, with ``${filename}`` replaced by the file's name."""
    key = fields.get("key")
    if key is None or key == "":
        raise _missing("key")
    if FILENAME_VARIABLE in key:
        # A browser sends the name alone; some send a path: keep its last segment.
        name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
        key = key.replace(FILENAME_VARIABLE, name)
    return key


def check_policy(policy: Policy, fields: Mapping[str, str], bucket: str, key: str,
                 file_length: int, now: datetime) -> None:
    """Every condition holds, every field is named, the file's size is in range."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    if now >= policy.expiration:
        raise errors.AccessDenied("Invalid according to Policy: Policy expired.")
    values = {**fields, "bucket": bucket, "key": key}
    named: set[str] = set()
    for condition in policy.conditions:
        named.add(condition.field)
        if not condition.holds(values.get(condition.field, "")):
            raise errors.AccessDenied("Invalid according to Policy: Policy Condition failed: "
                                      + condition.quoted())
    extra = sorted(name for name in values
                   if name not in named and name not in EXEMPT_FIELDS
                   and not name.startswith(EXEMPT_PREFIXES))
    if extra:
        raise errors.AccessDenied("Invalid according to Policy: Extra input fields: "
                                  + ", ".join(extra))
    if policy.max_length is not None and file_length > policy.max_length:
        raise errors.EntityTooLarge(ProposedSize=str(file_length),
                                    MaxSizeAllowed=str(policy.max_length))
    if file_length < policy.min_length:
        raise errors.EntityTooSmall(ProposedSize=str(file_length),
                                    MinSizeAllowed=str(policy.min_length))


def put_headers(fields: Mapping[str, str], file_content_type: str | None) -> dict[str, str]:
    """The headers of the PutObject a form describes (lower-case names).

    Content headers, ``x-amz-*`` fields (metadata, encryption, storage class,
    ACL grants, object lock, ...) as the headers of those names, so that every
    layer below applies (or refuses) them as it would a PUT's; ``acl`` as
    ``x-amz-acl``; ``tagging`` (an XML TagSet) as ``x-amz-tagging``.  The
    authentication fields and the file's checksums (verified as the file is
    read) are not headers.  Content-Type defaults to the file part's.
    """
    headers: dict[str, str] = {}
    for name, value in fields.items():
        if name in AUTH_FIELDS or name.startswith("x-amz-checksum-"):
            continue
        if name in CONTENT_FIELDS or name.startswith("x-amz-"):
            headers[name] = value
    if "content-type" not in headers and file_content_type:
        headers["content-type"] = file_content_type
    if "acl" in fields:
        headers["x-amz-acl"] = fields["acl"]
    if "tagging" in fields:
        headers["x-amz-tagging"] = tagging_header(fields["tagging"])
    return headers


def tagging_header(document: str) -> str:
    """A ``<Tagging><TagSet><Tag>...`` field as the ``x-amz-tagging`` header's query form."""
    root = xml.parse(document.encode("utf-8"))
    pairs: list[str] = []
    for tag in root.iter():
        if tag.tag.rpartition("}")[2] != "Tag":
            continue
        key = xml.child_text(tag, "Key")
        value = xml.child_text(tag, "Value")
        if key is None:
            raise errors.MalformedXML()
        pairs.append(quote(key, safe="") + "=" + quote(value or "", safe=""))
    return "&".join(pairs)


def success_status(fields: Mapping[str, str]) -> int:
    """``success_action_status``: 200, 201 or (anything else) 204."""
    value = fields.get("success_action_status", "")
    return int(value) if value in ("200", "201") else 204


def redirect_target(fields: Mapping[str, str]) -> str | None:
    """``success_action_redirect`` (or the older ``redirect``) if it is an http(s) URL."""
    value = fields.get("success_action_redirect") or fields.get("redirect")
    if value and re.match(r"https?://[^\s]+\Z", value, re.ASCII):
        return value
    return None

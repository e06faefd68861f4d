"""S3 access control lists (pure): canned ACLs, grant headers, the XML document.

An ACL is a tuple of :class:`Grant` (grantee and permission), in the order the
client gave it.  A grantee is a canonical user (by id) or one of S3's three
predefined groups (by URI).  Three ways to give one, each as AWS reads it:

* a **canned ACL** (``x-amz-acl``), expanded by AWS's table
  (https://docs.aws.amazon.com/AmazonS3/latest/userguide/acl-overview.html#canned-acl);
  an unknown name is InvalidArgument (400);
* **grant headers** (``x-amz-grant-read: id="...", uri="..."``), exactly the grants
  named; together with ``x-amz-acl``, InvalidRequest (400): "Specifying both Canned
  ACLs and Header Grants is not allowed";
* an **AccessControlPolicy** XML body (PutBucketAcl, PutObjectAcl), parsed with
  defusedxml (``encproxy.s3.xml``); a document that does not parse or validate is
  MalformedACLError (400).

The caller says who can be named (``owner_id``: the one account of a store that has
one).  A canonical user id that is not the owner is InvalidArgument ("Invalid id"),
as AWS answers for an id it does not know; an email grantee is
UnresolvableGrantByEmailAddress (400), as AWS answers for an address it cannot map
to an account (and every address, in the regions that stopped resolving them).

Two canned ACLs are not offered: ``aws-exec-read`` grants READ to Amazon EC2,
an account that does not exist outside AWS, so it is NotImplemented rather than
stored as something else.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass

from encproxy import errors
from encproxy.s3 import xml

XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
_XSI_TYPE = "{" + XSI_NS + "}type"

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
LOG_DELIVERY = "http://acs.amazonaws.com/groups/s3/LogDelivery"
GROUPS = frozenset({ALL_USERS, AUTHENTICATED_USERS, LOG_DELIVERY})

CANONICAL_USER = "CanonicalUser"
GROUP = "Group"
GRANTEE_TYPES = frozenset({CANONICAL_USER, GROUP})

FULL_CONTROL = "FULL_CONTROL"
READ = "READ"
WRITE = "WRITE"
READ_ACP = "READ_ACP"
WRITE_ACP = "WRITE_ACP"
PERMISSIONS = frozenset({FULL_CONTROL, READ, WRITE, READ_ACP, WRITE_ACP})

#: ``x-amz-grant-*`` header -> permission.
GRANT_HEADERS = {
    "x-amz-grant-read": READ,
    "x-amz-grant-write": WRITE,
    "x-amz-grant-read-acp": READ_ACP,
    "x-amz-grant-write-acp": WRITE_ACP,
    "x-amz-grant-full-control": FULL_CONTROL,
}
ACL_HEADER = "x-amz-acl"

# An AccessControlPolicy of 100 grants is AWS's limit; this caps the document well above.
MAX_POLICY_XML = 64 * 1024
MAX_GRANTS = 100


@dataclass(frozen=True)
class Grant:
    """One grant: ``grantee_type`` is CanonicalUser (``grantee`` an id) or Group (a URI)."""

    grantee_type: str
    grantee: str
    permission: str

    def __post_init__(self) -> None:
        if self.grantee_type not in GRANTEE_TYPES or self.permission not in PERMISSIONS \
                or not isinstance(self.grantee, str) or not self.grantee:
            raise ValueError(f"not a grant: {self!r}")
        if self.grantee_type == GROUP and self.grantee not in GROUPS:
            raise ValueError(f"not an S3 group: {self.grantee!r}")


Acl = tuple[Grant, ...]


def owner_full_control(owner_id: str) -> Acl:
    """``private``: what a bucket or object without any other ACL has."""
    return (Grant(CANONICAL_USER, owner_id, FULL_CONTROL),)


def _groups(owner_id: str, *grants: tuple[str, str]) -> Acl:
    return owner_full_control(owner_id) + tuple(Grant(GROUP, uri, p) for uri, p in grants)


def canned(name: str, owner_id: str) -> Acl:
    """The grants of canned ACL ``name``, where the owner of the object and of its bucket
    is ``owner_id`` (so ``bucket-owner-*`` add nothing to the owner's FULL_CONTROL)."""
    if name in ("private", "bucket-owner-read", "bucket-owner-full-control"):
        return owner_full_control(owner_id)
    if name == "public-read":
        return _groups(owner_id, (ALL_USERS, READ))
    if name == "public-read-write":
        return _groups(owner_id, (ALL_USERS, READ), (ALL_USERS, WRITE))
    if name == "authenticated-read":
        return _groups(owner_id, (AUTHENTICATED_USERS, READ))
    if name == "log-delivery-write":
        return _groups(owner_id, (LOG_DELIVERY, WRITE), (LOG_DELIVERY, READ_ACP))
    if name == "aws-exec-read":
        raise errors.NotImplementedError_(
            "The canned ACL aws-exec-read grants READ to Amazon EC2, which this store "
            "does not know.", Header=ACL_HEADER)
    raise errors.InvalidArgument(None, ArgumentName=ACL_HEADER, ArgumentValue=name)


# -- grant headers -----------------------------------------------------------------------
_GRANTEE = re.compile(r'\s*([A-Za-z]+)\s*=\s*(?:"([^"]*)"|([^,"\s]+))\s*(?:,|$)')


def _grantee(kind: str, value: str, owner_id: str, permission: str) -> Grant:
    kind = kind.lower()
    if kind == "id":
        if value != owner_id:
            raise errors.InvalidArgument("Invalid id", ArgumentName="CanonicalUser/ID",
                                         ArgumentValue=value)
        return Grant(CANONICAL_USER, value, permission)
    if kind == "uri":
        if value not in GROUPS:
            raise errors.InvalidArgument("Invalid group uri", ArgumentName="Group/URI",
                                         ArgumentValue=value)
        return Grant(GROUP, value, permission)
    if kind == "emailaddress":
        raise errors.UnresolvableGrantByEmailAddress(EmailAddress=value)
    raise errors.InvalidArgument(f"Invalid grantee type {kind!r}", ArgumentName="x-amz-grant")


def parse_grant_header(value: str, permission: str, owner_id: str) -> Acl:
    """The grants of one ``x-amz-grant-*`` header: ``id="..."``, ``uri="..."``,
    ``emailAddress="..."``, comma-separated."""
    out: list[Grant] = []
    pos = 0
    text = value.strip()
    while pos < len(text):
        m = _GRANTEE.match(text, pos)
        if m is None or m.end() == pos:
            raise errors.InvalidArgument("Invalid grant header", ArgumentName="x-amz-grant",
                                         ArgumentValue=value)
        grantee = m.group(2) if m.group(2) is not None else m.group(3)
        out.append(_grantee(m.group(1), grantee, owner_id, permission))
        pos = m.end()
    if not out:
        raise errors.InvalidArgument("Invalid grant header", ArgumentName="x-amz-grant",
                                     ArgumentValue=value)
    return tuple(out)


def has_acl_headers(headers: Mapping[str, str]) -> bool:
    return ACL_HEADER in headers or any(name in headers for name in GRANT_HEADERS)


def from_headers(headers: Mapping[str, str], owner_id: str) -> Acl | None:
    """The ACL a request's headers (lower-case names) give, None when they give none."""
    grant_names = [name for name in GRANT_HEADERS if name in headers]
    if ACL_HEADER in headers:
        if grant_names:
            raise errors.InvalidRequest(
                "Specifying both Canned ACLs and Header Grants is not allowed")
        return canned(headers[ACL_HEADER].strip(), owner_id)
    if not grant_names:
        return None
    grants: list[Grant] = []
    for name in grant_names:
        grants.extend(parse_grant_header(headers[name], GRANT_HEADERS[name], owner_id))
    return _checked(grants)


def _checked(grants: list[Grant]) -> Acl:
    if len(grants) > MAX_GRANTS:
        raise errors.MalformedACLError("An ACL can have at most 100 grants.")
    return tuple(dict.fromkeys(grants))   # a repeated grant once, order kept


# -- the XML document ----------------------------------------------------------------------
def parse_policy(body: bytes, owner_id: str) -> Acl:
    """The grants of an ``AccessControlPolicy`` body.

    ``Owner/ID``, when given, must be the owner: AWS refuses to change an owner
    through an ACL (AccessDenied).
    """
    try:
        root = xml.parse(body, MAX_POLICY_XML)
    except errors.MalformedXML:
        raise errors.MalformedACLError() from None
    if root.tag != "AccessControlPolicy":
        raise errors.MalformedACLError()
    owner = root.find("Owner")
    if owner is not None:
        given = xml.child_text(owner, "ID")
        if given is not None and given.strip() != owner_id:
            raise errors.AccessDenied()
    acl = root.find("AccessControlList")
    if acl is None:
        raise errors.MalformedACLError()
    grants: list[Grant] = []
    for el in acl:
        if el.tag != "Grant":
            raise errors.MalformedACLError()
        grants.append(_policy_grant(el, owner_id))
    return _checked(grants)


def _policy_grant(el: ET.Element, owner_id: str) -> Grant:
    grantee = el.find("Grantee")
    permission = (xml.child_text(el, "Permission") or "").strip()
    if grantee is None or permission not in PERMISSIONS:
        raise errors.MalformedACLError()
    kind = grantee.get(_XSI_TYPE) or grantee.get("type")
    fields = {"CanonicalUser": ("id", "ID"), "Group": ("uri", "URI"),
              "AmazonCustomerByEmail": ("emailaddress", "EmailAddress")}
    if kind not in fields:
        raise errors.MalformedACLError()
    header_kind, tag = fields[kind]
    value = xml.child_text(grantee, tag)
    if value is None or not value.strip():
        raise errors.MalformedACLError()
    return _grantee(header_kind, value.strip(), owner_id, permission)


def policy_xml(grants: Acl, owner_id: str, display_name: str) -> bytes:
    """The GetBucketAcl / GetObjectAcl answer.

    ``Grantee`` carries ``xsi:type``, which clients read as the grantee's type, so
    the document is built as elements (``xml.Node`` has no attributes).  Group grants
    come first, then canonical users, each in the order given: the order Ceph RGW
    answers in, which ceph/s3-tests compare against (AWS documents none).
    """
    root = ET.Element("AccessControlPolicy")
    _owner(ET.SubElement(root, "Owner"), owner_id, display_name)
    listing = ET.SubElement(root, "AccessControlList")
    for grant in sorted(grants, key=lambda g: g.grantee_type != GROUP):
        node = ET.SubElement(listing, "Grant")
        grantee = ET.SubElement(node, "Grantee", {"xmlns:xsi": XSI_NS,
                                                  "xsi:type": grant.grantee_type})
        if grant.grantee_type == CANONICAL_USER:
            _owner(grantee, grant.grantee,
                   display_name if grant.grantee == owner_id else None)
        else:
            ET.SubElement(grantee, "URI").text = grant.grantee
        ET.SubElement(node, "Permission").text = grant.permission
    return xml.render_element(root)


def _owner(parent: ET.Element, owner_id: str, display_name: str | None) -> None:
    ET.SubElement(parent, "ID").text = owner_id
    if display_name is not None:
        ET.SubElement(parent, "DisplayName").text = display_name


# -- decisions ---------------------------------------------------------------------------
def grants_to_all_users(grants: Acl, permission: str) -> bool:
    """Whether the AllUsers group (any caller, anonymous included) has ``permission``."""
    return any(g.grantee_type == GROUP and g.grantee == ALL_USERS
               and g.permission in (permission, FULL_CONTROL) for g in grants)


def grant_headers_of_policy(body: bytes) -> dict[str, str]:
    """The ``x-amz-grant-*`` headers that give an object exactly the ACL of an
    ``AccessControlPolicy`` a backend answered (GetObjectAcl), whoever its grantees.

    A copy resets the ACL of what it writes (S3's CopyObject, and a new upload), so a
    copy that must leave an object as it was (a re-wrap of its data key) names the
    old ACL's grants in these headers.  MalformedACLError for an answer that is not
    such a policy.
    """
    try:
        root = xml.parse(body, MAX_POLICY_XML)
    except errors.MalformedXML:
        raise errors.MalformedACLError() from None
    acl = root.find("AccessControlList")
    if root.tag != "AccessControlPolicy" or acl is None:
        raise errors.MalformedACLError()
    by_permission: dict[str, list[str]] = {}
    fields = {CANONICAL_USER: ("id", "ID"), GROUP: ("uri", "URI"),
              "AmazonCustomerByEmail": ("emailAddress", "EmailAddress")}
    for el in acl:
        grantee = el.find("Grantee")
        permission = (xml.child_text(el, "Permission") or "").strip()
        kind = None if grantee is None else grantee.get(_XSI_TYPE) or grantee.get("type")
        if el.tag != "Grant" or grantee is None or permission not in PERMISSIONS \
                or kind not in fields:
            raise errors.MalformedACLError()
        name, tag = fields[kind]
        value = (xml.child_text(grantee, tag) or "").strip()
        if not value or '"' in value:
            raise errors.MalformedACLError()
        by_permission.setdefault(permission, []).append(f'{name}="{value}"')
    header_of = {permission: header for header, permission in GRANT_HEADERS.items()}
    return {header_of[permission]: ", ".join(grantees)
            for permission, grantees in by_permission.items()}

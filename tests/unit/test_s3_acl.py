"""encproxy.s3.acl: canned ACLs, grant headers, the AccessControlPolicy document (pure)."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from encproxy import errors
from encproxy.s3 import acl
from encproxy.s3.acl import ALL_USERS, AUTHENTICATED_USERS, LOG_DELIVERY, Grant

OWNER = "a" * 64
OTHER = "b" * 64
FC = Grant(acl.CANONICAL_USER, OWNER, acl.FULL_CONTROL)


def group(uri: str, permission: str) -> Grant:
    return Grant(acl.GROUP, uri, permission)


# -- canned ACLs (AWS's table) --------------------------------------------------------------

@pytest.mark.parametrize("name,expected", [
    pytest.param("private", (FC,), id="private"),
    pytest.param("public-read", (FC, group(ALL_USERS, "READ")), id="public-read"),
    pytest.param("public-read-write",
                 (FC, group(ALL_USERS, "READ"), group(ALL_USERS, "WRITE")),
                 id="public-read-write"),
    pytest.param("authenticated-read", (FC, group(AUTHENTICATED_USERS, "READ")),
                 id="authenticated-read"),
    pytest.param("bucket-owner-read", (FC,), id="bucket-owner-read-same-owner"),
    pytest.param("bucket-owner-full-control", (FC,), id="bucket-owner-full-control"),
    pytest.param("log-delivery-write",
                 (FC, group(LOG_DELIVERY, "WRITE"), group(LOG_DELIVERY, "READ_ACP")),
                 id="log-delivery-write"),
])
def test_canned(name: str, expected: tuple[Grant, ...]) -> None:
    assert acl.canned(name, OWNER) == expected
    assert acl.from_headers({"x-amz-acl": name}, OWNER) == expected


@pytest.mark.parametrize("name", ["public-ready", "", "PUBLIC-READ", "privatex"])
def test_unknown_canned_acl_is_invalid_argument(name: str) -> None:
    with pytest.raises(errors.InvalidArgument) as exc:
        acl.canned(name, OWNER)
    assert exc.value.status == 400
    assert exc.value.fields == {"ArgumentName": "x-amz-acl", "ArgumentValue": name}


def test_aws_exec_read_is_not_implemented() -> None:
    with pytest.raises(errors.NotImplementedError_):
        acl.canned("aws-exec-read", OWNER)


# -- grant headers --------------------------------------------------------------------------

@pytest.mark.parametrize("headers,expected", [
    pytest.param({"x-amz-grant-read": f'id="{OWNER}"'},
                 (Grant(acl.CANONICAL_USER, OWNER, "READ"),), id="id-quoted"),
    pytest.param({"x-amz-grant-write-acp": f"id={OWNER}"},
                 (Grant(acl.CANONICAL_USER, OWNER, "WRITE_ACP"),), id="id-bare"),
    pytest.param({"x-amz-grant-read": f'uri="{ALL_USERS}", uri="{AUTHENTICATED_USERS}"'},
                 (group(ALL_USERS, "READ"), group(AUTHENTICATED_USERS, "READ")),
                 id="two-groups"),
    pytest.param({"x-amz-grant-full-control": f'id="{OWNER}"',
                  "x-amz-grant-write": f'uri="{ALL_USERS}"',
                  "x-amz-grant-read-acp": f'uri="{ALL_USERS}"'},
                 (group(ALL_USERS, "WRITE"), group(ALL_USERS, "READ_ACP"), FC),
                 id="several-headers"),
    pytest.param({"x-amz-grant-read": f'uri="{ALL_USERS}",uri="{ALL_USERS}"'},
                 (group(ALL_USERS, "READ"),), id="repeated-once"),
    pytest.param({}, None, id="none"),
    pytest.param({"content-type": "text/plain"}, None, id="unrelated-headers"),
])
def test_grant_headers(headers: dict[str, str], expected: tuple[Grant, ...] | None) -> None:
    assert acl.from_headers(headers, OWNER) == expected


@pytest.mark.parametrize("value,error,argument", [
    pytest.param(f'id="{OTHER}"', errors.InvalidArgument, "CanonicalUser/ID", id="unknown-id"),
    pytest.param('uri="http://example.com/group"', errors.InvalidArgument, "Group/URI",
                 id="unknown-group"),
    pytest.param('emailAddress="someone@example.com"', errors.UnresolvableGrantByEmailAddress,
                 None, id="email"),
    pytest.param('name="x"', errors.InvalidArgument, "x-amz-grant", id="unknown-type"),
    pytest.param("garbage", errors.InvalidArgument, "x-amz-grant", id="no-equals"),
    pytest.param("", errors.InvalidArgument, "x-amz-grant", id="empty"),
    pytest.param(f'id="{OWNER}" uri="{ALL_USERS}"', errors.InvalidArgument, "x-amz-grant",
                 id="missing-comma"),
])
def test_bad_grant_headers(value: str, error: type[errors.S3Error],
                           argument: str | None) -> None:
    with pytest.raises(error) as exc:
        acl.from_headers({"x-amz-grant-read": value}, OWNER)
    assert exc.value.status == 400
    assert exc.value.fields.get("ArgumentName") == argument


def test_canned_and_grant_headers_together_are_invalid_request() -> None:
    with pytest.raises(errors.InvalidRequest) as exc:
        acl.from_headers({"x-amz-acl": "private", "x-amz-grant-read": f'id="{OWNER}"'}, OWNER)
    assert "both Canned ACLs and Header Grants" in exc.value.message


def test_has_acl_headers() -> None:
    assert acl.has_acl_headers({"x-amz-acl": "private"})
    assert acl.has_acl_headers({"x-amz-grant-read-acp": "x"})
    assert not acl.has_acl_headers({"x-amz-meta-acl": "x"})


# -- the document ---------------------------------------------------------------------------

def policy(grants: str, owner: str | None = OWNER) -> bytes:
    owner_xml = "" if owner is None else f"<Owner><ID>{owner}</ID></Owner>"
    return (f'<AccessControlPolicy xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{owner_xml}'
            f"<AccessControlList>{grants}</AccessControlList></AccessControlPolicy>").encode()


def grant_xml(kind: str, tag: str, value: str, permission: str) -> str:
    return (f'<Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            f'xsi:type="{kind}"><{tag}>{value}</{tag}></Grantee>'
            f"<Permission>{permission}</Permission></Grant>")


def test_parse_policy() -> None:
    body = policy(grant_xml("CanonicalUser", "ID", OWNER, "FULL_CONTROL")
                  + grant_xml("Group", "URI", ALL_USERS, "READ"))
    assert acl.parse_policy(body, OWNER) == (FC, group(ALL_USERS, "READ"))


def test_parse_policy_without_owner_and_empty_list() -> None:
    assert acl.parse_policy(policy("", owner=None), OWNER) == ()


@pytest.mark.parametrize("body,error", [
    pytest.param(b"<AccessControlPolicy><Oops", errors.MalformedACLError, id="not-xml"),
    pytest.param(b"<Other/>", errors.MalformedACLError, id="wrong-root"),
    pytest.param(b"<AccessControlPolicy/>", errors.MalformedACLError, id="no-list"),
    pytest.param(policy(grant_xml("Group", "URI", ALL_USERS, "EVERYTHING")),
                 errors.MalformedACLError, id="bad-permission"),
    pytest.param(policy(grant_xml("Martian", "ID", OWNER, "READ")),
                 errors.MalformedACLError, id="bad-grantee-type"),
    pytest.param(policy(grant_xml("CanonicalUser", "URI", OWNER, "READ")),
                 errors.MalformedACLError, id="id-missing"),
    pytest.param(policy("<Other/>"), errors.MalformedACLError, id="not-a-grant"),
    pytest.param(policy(grant_xml("CanonicalUser", "ID", OTHER, "READ")),
                 errors.InvalidArgument, id="unknown-id"),
    pytest.param(policy(grant_xml("AmazonCustomerByEmail", "EmailAddress", "a@b.c", "READ")),
                 errors.UnresolvableGrantByEmailAddress, id="email"),
    pytest.param(policy("", owner=OTHER), errors.AccessDenied, id="other-owner"),
    pytest.param(b'<!DOCTYPE x [<!ENTITY e "boom">]><AccessControlPolicy>&e;'
                 b"</AccessControlPolicy>", errors.MalformedACLError, id="dtd-refused"),
    pytest.param(policy(grant_xml("Group", "URI", ALL_USERS, "READ") * 101),
                 errors.MalformedACLError, id="too-many-grants"),
])
def test_bad_policies(body: bytes, error: type[errors.S3Error]) -> None:
    with pytest.raises(error):
        acl.parse_policy(body, OWNER)


def test_empty_acl_document() -> None:
    root = ET.fromstring(acl.policy_xml((), OWNER, "encproxy"))
    assert [el.tag.rsplit("}", 1)[-1] for el in root.iter()] == \
        ["AccessControlPolicy", "Owner", "ID", "DisplayName", "AccessControlList"]


def test_policy_xml_round_trips_through_parse() -> None:
    grants = (FC, group(ALL_USERS, "READ"), group(LOG_DELIVERY, "WRITE"))
    document = acl.policy_xml(grants, OWNER, "encproxy")
    root = ET.fromstring(document)
    ns = {"s3": "http://s3.amazonaws.com/doc/2006-03-01/"}
    assert root.findtext("s3:Owner/s3:ID", namespaces=ns) == OWNER
    assert root.findtext("s3:Owner/s3:DisplayName", namespaces=ns) == "encproxy"
    types = [g.find("s3:Grantee", ns).get(f"{{{acl.XSI_NS}}}type")  # type: ignore[union-attr]
             for g in root.iterfind("s3:AccessControlList/s3:Grant", ns)]
    assert types == ["Group", "Group", "CanonicalUser"]     # groups first, as RGW answers
    assert acl.parse_policy(document, OWNER) == grants[1:] + grants[:1]


@pytest.mark.parametrize("grants,permission,expected", [
    pytest.param((FC,), "READ", False, id="private"),
    pytest.param((FC, group(ALL_USERS, "READ")), "READ", True, id="public-read"),
    pytest.param((FC, group(ALL_USERS, "READ")), "WRITE", False, id="public-read-no-write"),
    pytest.param((group(ALL_USERS, "FULL_CONTROL"),), "WRITE_ACP", True, id="full-control"),
    pytest.param((group(AUTHENTICATED_USERS, "READ"),), "READ", False,
                 id="authenticated-is-not-everyone"),
    pytest.param((Grant(acl.CANONICAL_USER, OWNER, "READ"),), "READ", False, id="owner-only"),
])
def test_grants_to_all_users(grants: tuple[Grant, ...], permission: str,
                             expected: bool) -> None:
    assert acl.grants_to_all_users(grants, permission) is expected


def test_grant_refuses_what_is_not_a_grant() -> None:
    with pytest.raises(ValueError):
        Grant("Group", "http://example.com/", "READ")
    with pytest.raises(ValueError):
        Grant("CanonicalUser", OWNER, "ALL")


def test_grant_headers_of_a_backends_policy_name_every_grantee():
    body = (b'<?xml version="1.0" encoding="UTF-8"?>'
            b'<AccessControlPolicy xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            b'<Owner><ID>owner1</ID></Owner><AccessControlList>'
            b'<Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            b'xsi:type="CanonicalUser"><ID>owner1</ID></Grantee>'
            b'<Permission>FULL_CONTROL</Permission></Grant>'
            b'<Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            b'xsi:type="Group"><URI>http://acs.amazonaws.com/groups/global/AllUsers</URI>'
            b'</Grantee><Permission>READ</Permission></Grant>'
            b'<Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            b'xsi:type="CanonicalUser"><ID>other-user</ID></Grantee>'
            b'<Permission>READ</Permission></Grant>'
            b'</AccessControlList></AccessControlPolicy>')
    assert acl.grant_headers_of_policy(body) == {
        "x-amz-grant-full-control": 'id="owner1"',
        "x-amz-grant-read": 'uri="http://acs.amazonaws.com/groups/global/AllUsers", '
                            'id="other-user"',
    }


@pytest.mark.parametrize("body", [
    b"not xml",
    b"<Other/>",
    b"<AccessControlPolicy><Owner><ID>o</ID></Owner></AccessControlPolicy>",
    b'<AccessControlPolicy><AccessControlList><Grant><Grantee '
    b'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="Group">'
    b'<URI>u</URI></Grantee><Permission>EVERYTHING</Permission></Grant>'
    b'</AccessControlList></AccessControlPolicy>',
])
def test_grant_headers_of_a_malformed_policy_are_refused(body):
    with pytest.raises(errors.MalformedACLError):
        acl.grant_headers_of_policy(body)

"""encproxy.s3.tagging: S3's tag rules, the Tagging document and x-amz-tagging (pure)."""
from __future__ import annotations

import pytest

from encproxy import errors
from encproxy.s3 import tagging, xml


def document(*pairs: tuple[str, str]) -> bytes:
    tags = "".join(f"<Tag><Key>{k}</Key><Value>{v}</Value></Tag>" for k, v in pairs)
    return f'<Tagging xmlns="{xml.S3_NS}"><TagSet>{tags}</TagSet></Tagging>'.encode()


def test_document_round_trips_in_order() -> None:
    tags = (("b", "2"), ("a", ""), ("ключ", "значение + <more>"[:10] + " @:"))
    body = xml.render(tagging.tagging_xml(tags))
    assert tagging.parse_tagging(body) == tags


def test_empty_tag_set_is_allowed() -> None:
    assert tagging.parse_tagging(document()) == ()


def test_limits_at_the_edge_pass() -> None:
    pairs = tuple((f"{i}" + "k" * 127, "v" * 256) for i in range(10))
    assert tagging.parse_tagging(document(*pairs)) == pairs
    assert len(tagging.check(tuple((f"k{i}", "") for i in range(50)), 50)) == 50


@pytest.mark.parametrize("pairs,limit", [
    pytest.param([(f"k{i}", "v") for i in range(11)], 10, id="eleven-on-an-object"),
    pytest.param([(f"k{i}", "v") for i in range(51)], 50, id="fifty-one-on-a-bucket"),
    pytest.param([("k" * 129, "v")], 10, id="long-key"),
    pytest.param([("", "v")], 10, id="empty-key"),
    pytest.param([("k", "v" * 257)], 10, id="long-value"),
    pytest.param([("k", "1"), ("k", "2")], 10, id="duplicate-key"),
    pytest.param([("aws:reserved", "v")], 10, id="aws-prefix"),
])
def test_rule_breakers_are_invalid_tag(pairs: list[tuple[str, str]], limit: int) -> None:
    with pytest.raises(errors.InvalidTag) as exc:
        tagging.check(tuple(pairs), limit)
    assert exc.value.status == 400


@pytest.mark.parametrize("body", [
    b"<Tags><TagSet/></Tags>",
    b"<Tagging/>",
    b"<Tagging><TagSet><Tag><Value>v</Value></Tag></TagSet></Tagging>",
    b"<Tagging><TagSet><Other/></TagSet></Tagging>",
    b"<Tagging><TagSet></TagSet><TagSet></TagSet></Tagging>",
    b"not xml",
])
def test_malformed_documents(body: bytes) -> None:
    with pytest.raises(errors.MalformedXML):
        tagging.parse_tagging(body)


def test_header_is_a_url_encoded_query() -> None:
    assert tagging.parse_header("a=1&b=two%20words&c=") == (("a", "1"), ("b", "two words"),
                                                             ("c", ""))
    assert tagging.parse_header("") == ()
    with pytest.raises(errors.InvalidTag):
        tagging.parse_header("a=1&a=2")
    with pytest.raises(errors.InvalidTag):
        tagging.parse_header("&".join(f"k{i}=v" for i in range(11)))


def test_copy_directive() -> None:
    assert tagging.directive(None) == "COPY"
    assert tagging.directive("REPLACE") == "REPLACE"
    with pytest.raises(errors.InvalidArgument):
        tagging.directive("replace")

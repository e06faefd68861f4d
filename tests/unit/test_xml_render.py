"""encproxy's XML (``encproxy.s3.xml``): rendering is ElementTree's, byte for byte, without
its generality; parsing takes ElementTree's C parser where no DTD can be, and defusedxml
everywhere else, so DTDs and entities are refused either way."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from encproxy.errors import MalformedXML
from encproxy.s3 import xml

TEXT = st.one_of(st.none(), st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)),
                                    max_size=12))
XML_TEXT = st.one_of(st.none(), st.text(st.characters(
    codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12))
TAGS = st.sampled_from(["Key", "Size", "ETag", "Contents", "Prefix", "Owner"])


@st.composite
def nodes(draw: st.DrawFn, depth: int = 0, text: st.SearchStrategy[str | None] = TEXT
          ) -> xml.Node:
    node = xml.Node(draw(TAGS), draw(text))
    if depth < 3:
        for child in draw(st.lists(nodes(depth + 1, text), max_size=3)):
            node.children.append(child)
    return node


def reference(root: xml.Node, namespace: str | None) -> bytes:
    el = root._element()   # noqa: SLF001 - the ElementTree form it replaced
    if namespace:
        el.set("xmlns", namespace)
    return xml.XML_DECLARATION + ET.tostring(el, encoding="utf-8", xml_declaration=False)


@given(nodes(), st.sampled_from([xml.S3_NS, None]))
def test_a_built_tree_renders_as_elementtree_renders_it(root: xml.Node,
                                                       namespace: str | None) -> None:
    assert xml.render(root, namespace) == reference(root, namespace)


@given(nodes(text=XML_TEXT), XML_TEXT, XML_TEXT)
def test_a_parsed_tree_renders_as_elementtree_renders_it(root: xml.Node, tail: str | None,
                                                        attribute: str | None) -> None:
    parsed = xml.parse(xml.render(root))
    if len(parsed):
        parsed[0].tail = tail
        if attribute is not None:
            parsed[0].set("type", attribute + '"\r\n\t<&>')
    expected = xml.XML_DECLARATION + ET.tostring(parsed, encoding="utf-8",
                                                 xml_declaration=False)
    assert xml.render_element(parsed, None) == expected


def test_an_empty_text_is_an_empty_element() -> None:
    assert xml.render(xml.Node("A", ""), None).endswith(b"<A />")
    assert xml.render(xml.Node("A", [xml.Node("B", "x<&>y")]), None).endswith(
        b"<A><B>x&lt;&amp;&gt;y</B></A>")


# -- parsing: the C parser only where no DTD can be --------------------------------------

HOSTILE = [
    b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY b "c">]><a>&b;</a>',          # internal entity
    b'<!DOCTYPE a [<!ENTITY b SYSTEM "file:///etc/passwd">]><a>&b;</a>',       # external
    b'<!DOCTYPE a SYSTEM "http://example.invalid/a.dtd"><a/>',                  # external DTD
    b"<a>&undeclared;</a>",                                                     # no DTD at all
    b'<!DOCTYPE a [<!ENTITY % p "x">]><a/>',                                    # parameter
]


@pytest.mark.parametrize("body", HOSTILE)
def test_dtds_and_entities_are_refused(body: bytes) -> None:
    with pytest.raises(MalformedXML):
        xml.parse(body)


def test_comments_and_cdata_still_parse() -> None:
    root = xml.parse(b"<a><!-- note --><b><![CDATA[x<y]]></b></a>")
    assert xml.child_text(root, "b") == "x<y"


def test_both_paths_give_the_same_tree() -> None:
    plain = xml.parse(b'<a xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><b>1 &amp; 2</b></a>')
    commented = xml.parse(
        b'<a xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><!-- c --><b>1 &amp; 2</b></a>')
    assert ET.tostring(plain) == ET.tostring(commented) == b"<a><b>1 &amp; 2</b></a>"


# -- the S3 namespace, dropped before parsing where it is the only declaration ------------

def _stripped_by_defusedxml(body: bytes) -> bytes:
    """The tree the other path gives: a comment sends the body through defusedxml, whose
    namespaced tags parse strips."""
    head, _, rest = body.partition(b"?>")
    return ET.tostring(xml.parse(head + b"?><!-- c -->" + rest if rest else b"<!-- c -->" + body))


@given(nodes(text=XML_TEXT))
def test_dropping_the_declaration_gives_the_stripped_tree(root: xml.Node) -> None:
    body = xml.render(root)
    assert b"xmlns" in body
    assert ET.tostring(xml.parse(body)) == _stripped_by_defusedxml(body)


@pytest.mark.parametrize("body", [
    b'<a xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><b>1</b></a>',
    b"<?xml version='1.0'?>\n<a\n  xmlns = 'urn:x'><b>1</b></a>",
    b'<a><b xmlns="urn:x"><c>1</c></b><d>2</d></a>',                     # not on the root
    b'<a xmlns="urn:x"><k>xmlns="urn:y"</k></a>',                        # a second, in text
    b'<a xmlns="urn:x" xmlns:p="urn:p"><p:b>1</p:b><c>2</c></a>',        # a prefix
    b'<a b="&gt;" xmlns="urn:x"><c>1</c></a>',
    b'<a><k>xmlns="urn:y"</k></a>',                                      # only in text
    b'<?pi x?><?pi y?><a xmlns="urn:x"><c>1</c></a>',
])
def test_every_document_parses_to_the_stripped_tree(body: bytes) -> None:
    assert ET.tostring(xml.parse(body)) == _stripped_by_defusedxml(body)


def test_a_declaration_left_unterminated_is_refused() -> None:
    with pytest.raises(MalformedXML):
        xml.parse(b'<?pi <?pi <a xmlns="urn:x"/>')


# -- render_edited: a parsed page's source, with the texts encproxy changed -------------

EDITED = ("ETag", "Size", "ContinuationToken", "NextContinuationToken")
HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="' + xml.S3_NS + '">'


def listing(keys: list[str], token: str | None = None) -> str:
    """A backend's page as SeaweedFS writes one (quotes as &#34;, no spaces)."""
    entries = "".join(
        f"<Contents><Key>{xml.escape_text(key)}</Key><ETag>&#34;{n:032x}&#34;</ETag>"
        f"<Size>{4096 + n}</Size><Owner><ID>o</ID></Owner></Contents>"
        for n, key in enumerate(keys))
    following = "" if token is None else \
        f"<NextContinuationToken>{xml.escape_text(token)}</NextContinuationToken>"
    return HEAD + f"<Name>b</Name><IsTruncated>{str(token is not None).lower()}" \
        f"</IsTruncated>{following}{entries}</ListBucketResult>"


def edit(root: ET.Element, etags: list[str], sizes: list[int]) -> None:
    for element, etag in zip(root.iter("ETag"), etags, strict=False):
        element.text = etag
    for element, size in zip(root.iter("Size"), sizes, strict=False):
        element.text = str(size)


def canonical(body: bytes) -> str:
    return ET.canonicalize(body.decode("utf-8"))


def test_an_edited_page_is_its_source_with_the_new_texts() -> None:
    source = listing(["a&b", "c<d>", 'q"'], token="t1").encode()
    root = xml.parse(source)
    edit(root, ['"e1"', '"e2"', '"e3"'], [1, 2, 3])
    root.find("NextContinuationToken").text = "wrapped&"   # type: ignore[union-attr]
    expected = source
    for n in range(3):
        expected = expected.replace(f"&#34;{n:032x}&#34;".encode(), f'"e{n + 1}"'.encode())
        expected = expected.replace(f"<Size>{4096 + n}</Size>".encode(),
                                    f"<Size>{n + 1}</Size>".encode())
    expected = expected.replace(b">t1<", b">wrapped&amp;<")
    assert xml.render_edited(root, source, EDITED) == expected
    assert canonical(expected) == canonical(xml.render_element(root))


@given(st.lists(XML_TEXT.map(lambda t: t or ""), max_size=8),
       st.one_of(st.none(), XML_TEXT.map(lambda t: t or "")),
       st.lists(XML_TEXT.map(lambda t: t or ""), max_size=8),
       st.lists(st.integers(0, 1 << 40), max_size=8))
def test_an_edited_page_means_what_its_rendering_means(keys: list[str], token: str | None,
                                                       etags: list[str],
                                                       sizes: list[int]) -> None:
    source = listing(keys, token).encode()
    root = xml.parse(source)
    edit(root, etags, sizes)
    edited = xml.render_edited(root, source, EDITED)
    assert canonical(edited) == canonical(xml.render_element(root))
    assert xml.parse(edited).find("Contents") is not None or not keys


def page_with(tail: str, entry: str = "<Contents><Key>k</Key><ETag>e</ETag>"
              "<Size>1</Size></Contents>") -> bytes:
    return (HEAD + entry + tail + "</ListBucketResult>").encode()


@pytest.mark.parametrize("source, change", [
    (page_with("<!-- a comment -->"), None),
    (page_with("<?pi <ETag>x</ETag>?>"), None),
    (page_with("").replace(b'encoding="UTF-8"', b'encoding="ISO-8859-1"'), None),
    (page_with("").replace(b' xmlns="' + xml.S3_NS.encode() + b'"', b""), None),
    (page_with("", "<Contents><Key>k</Key><ETag a='1'>e</ETag><Size>1</Size></Contents>"),
     None),
    (page_with("", "<Contents><Key>k</Key><ETag/><Size>1</Size></Contents>"), None),
    (page_with(""), "append"),      # an edited tag's element added to the tree
    (page_with(""), "remove"),      # a page entry taken from it
], ids=["comment", "processing-instruction", "latin-1", "no-s3-namespace",
        "attribute-on-etag", "empty-etag", "element-added", "entry-removed"])
def test_a_source_that_cannot_carry_the_edit_is_rendered(source: bytes, change: str | None
                                                         ) -> None:
    root = xml.parse(source)
    if change == "append":
        root.append(root.makeelement("ContinuationToken", {}))
    elif change == "remove":
        root.remove(root.find("Contents"))   # type: ignore[arg-type]
    edit(root, ['"new"'], [7])
    assert xml.render_edited(root, source, EDITED) == xml.render_element(root)

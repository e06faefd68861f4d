"""S3 XML bodies: building responses and parsing request bodies.

Building uses the standard library's ElementTree (safe for output).  Every
parse goes through defusedxml with a size cap applied before parsing, so that
DTDs, entity expansion and external references are refused.
"""
from __future__ import annotations

import functools
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from typing import Union

import defusedxml.ElementTree as DET
from defusedxml import DefusedXmlException

from encproxy.errors import MalformedXML

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
MAX_REQUEST_XML = 1024 * 1024  # S3 caps DeleteObjects and CompleteMultipartUpload near here

Value = Union[str, int, bool, None, "Node", list["Node"]]


class Node:
    """An element in construction: ``Node("Key", "a.txt")`` or a tree of them."""

    __slots__ = ("tag", "children", "text")

    def __init__(self, tag: str, value: object = None) -> None:
        self.tag = tag
        self.children: list[Node] = []
        self.text: str | None = None
        if isinstance(value, Node):
            self.children.append(value)
        elif isinstance(value, list):
            self.children.extend(value)
        elif isinstance(value, bool):
            self.text = "true" if value else "false"
        elif value is not None:
            self.text = str(value)

    def add(self, tag: str, value: object = None) -> Node:
        child = Node(tag, value)
        self.children.append(child)
        return child

    def extend(self, nodes: Iterable[Node]) -> Node:
        self.children.extend(nodes)
        return self

    def _element(self) -> ET.Element:
        el = ET.Element(self.tag)
        el.text = self.text
        for c in self.children:
            el.append(c._element())
        return el


class Fragment(Node):
    """Markup already rendered by ``markup`` (or built with ``escape_text``), placed as
    one child: a listing renders its 1,000 entries as strings rather than as 7,000 nodes."""

    __slots__ = ("markup",)

    def __init__(self, markup: str) -> None:
        super().__init__("")
        self.markup = markup

    def _element(self) -> ET.Element:
        return ET.fromstring(self.markup)


def render(root: Node, namespace: str | None = S3_NS) -> bytes:
    out = [XML_DECLARATION.decode(), "<", root.tag]
    if namespace:
        out.append(' xmlns="' + _escape_attribute(namespace) + '"')
    _write_node_body(root, out)
    return "".join(out).encode("utf-8", "xmlcharrefreplace")


def render_element(el: ET.Element, namespace: str | None = S3_NS) -> bytes:
    """Re-render a parsed (namespace-stripped) element, e.g. after filtering it."""
    if namespace:
        el.set("xmlns", namespace)
    out = [XML_DECLARATION.decode()]
    try:
        _write_element(el, out)
    except _Unusual:
        body: bytes = ET.tostring(el, encoding="utf-8", xml_declaration=False)
        return XML_DECLARATION + body
    return "".join(out).encode("utf-8", "xmlcharrefreplace")


def render_edited(root: ET.Element, source: bytes | None, edited: tuple[str, ...]) -> bytes:
    """``root``, parsed from ``source`` and changed since only in the texts of its
    ``edited`` elements, rendered: ``source`` with those texts replaced where it provably
    holds every one of them as a plain ``<Tag>text</Tag>``, else :func:`render_element`.

    A backend's listing page differs from what the client gets only in its ETags, sizes
    and continuation tokens; re-rendering its 7,000 elements costs more than the parse.
    The edit is exact because of what ``source`` is checked to be (``_editable``): a
    document without ``<!`` (no DTD, comment or CDATA section) and without a processing
    instruction after its declaration, in which every ``<`` opens a tag (XML allows none
    in text or attribute values).  There ``<Tag>`` with no ``<`` before ``</Tag>`` is an
    element named ``Tag`` with no attributes and text only, and such matches come in
    document order; if they are as many as ``root`` has elements of that tag, they are
    all of them, one for one.  An element of an edited tag added to ``root`` or taken
    from it (or a page entry holding one) makes the counts differ: render_element."""
    if source is None or not _editable(source):
        return render_element(root)
    for tag in edited:
        elements = list(root.iter(tag))
        # [before, "<Tag>", text, "</Tag>", between, ..., after]: a text every 4th place.
        parts = _edited_pattern(tag).split(source)
        if len(parts) != 4 * len(elements) + 1:
            return render_element(root)
        if elements:
            parts[2::4] = [_escape_text(el.text or "").encode("utf-8", "xmlcharrefreplace")
                           for el in elements]
            source = b"".join(parts)
    return source


_DECLARATION = re.compile(rb"""<\?xml(?:\s+(?:version|standalone)\s*=\s*(?:"[^"<]*"|'[^'<]*'))*"""
                          rb"""(?:\s+encoding\s*=\s*["'](?i:utf-8)["'])?"""
                          rb"""(?:\s+(?:version|standalone)\s*=\s*(?:"[^"<]*"|'[^'<]*'))*\s*\?>""")
_S3_NAMESPACE_DECLARATION = b'xmlns="' + S3_NS.encode() + b'"'


def _editable(source: bytes) -> bool:
    """``source`` is a UTF-8 document of elements, text and references only (after its
    declaration, if any), its root in S3's namespace."""
    declared = _DECLARATION.match(source)
    start = declared.end() if declared else 0
    if _holds(source, b"<!", 0) or _holds(source, b"<?", start):
        return False
    root_tag = source[source.find(b"<", start):source.find(b">", start)]
    return _S3_NAMESPACE_DECLARATION in root_tag


def _holds(source: bytes, pair: bytes, start: int) -> bool:
    # "<" is a listing's most frequent byte: a search for "<!" steps through every one
    # (0.3 ms on a page); one for the rarer second byte alone usually settles it.
    return source.find(pair[1:], start) >= 0 and source.find(pair, start) >= 0


@functools.lru_cache(maxsize=16)
def _edited_pattern(tag: str) -> re.Pattern[bytes]:
    """``<tag>text</tag>``, each part captured (split keeps them)."""
    name = re.escape(tag.encode("ascii"))
    return re.compile(rb"(<" + name + rb">)([^<]*)(</" + name + rb">)")


# Serialization, byte for byte as ElementTree's (``<Empty />``, the same escapes), without
# its generality: S3 bodies have no namespace prefixes, comments or processing
# instructions, and a 1,000-entry listing is rendered in a fifth of the time.

class _Unusual(Exception):
    """An element ElementTree must render itself (a qualified tag, a comment)."""


def markup(node: Node) -> str:
    """``node`` rendered as a fragment (no declaration, no namespace)."""
    out = ["<", node.tag]
    _write_node_body(node, out)
    return "".join(out)


def escape_text(text: str) -> str:
    """``text`` escaped for an element's content, as ElementTree escapes it."""
    return _escape_text(text)


def _escape_text(text: str) -> str:
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    return text


def _escape_attribute(value: str) -> str:
    value = _escape_text(value)
    for raw, escaped in (('"', "&quot;"), ("\r", "&#13;"), ("\n", "&#10;"), ("\t", "&#09;")):
        if raw in value:
            value = value.replace(raw, escaped)
    return value


def _write_node_body(node: Node, out: list[str]) -> None:
    """What follows ``<tag`` of ``node``: its text and children, or `` />``."""
    if not node.text and not node.children:
        out.append(" />")
        return
    out.append(">")
    if node.text:
        out.append(_escape_text(node.text))
    for child in node.children:
        if isinstance(child, Fragment):
            out.append(child.markup)
            continue
        out.append("<" + child.tag)
        _write_node_body(child, out)
    out.append("</" + node.tag + ">")


def _write_element(el: ET.Element, out: list[str]) -> None:
    tag = el.tag
    if not isinstance(tag, str) or "{" in tag or ":" in tag:
        raise _Unusual()
    out.append("<" + tag)
    for name, value in el.items():
        if "{" in name:
            raise _Unusual()
        out.append(" " + name + '="' + _escape_attribute(value) + '"')
    if el.text or len(el):
        out.append(">")
        if el.text:
            out.append(_escape_text(el.text))
        for child in el:
            # Most of a listing's elements are leaves (``<Key>``, ``<Size>``): written
            # here, without a call each.
            text, ctag = child.text, child.tag
            if len(child) or child.attrib or child.tail or not isinstance(ctag, str) \
                    or "{" in ctag or ":" in ctag:
                _write_element(child, out)
            elif text:
                out.append("<" + ctag + ">" + _escape_text(text) + "</" + ctag + ">")
            else:
                out.append("<" + ctag + " />")
        out.append("</" + tag + ">")
    else:
        out.append(" />")
    if el.tail:
        out.append(_escape_text(el.tail))


def fields(tag: str, values: Mapping[str, object]) -> Node:
    """A flat element: ``fields("Bucket", {"Name": n, "CreationDate": d})``."""
    node = Node(tag)
    for k, v in values.items():
        node.add(k, v)
    return node


def parse(body: bytes, max_size: int = MAX_REQUEST_XML) -> ET.Element:
    """Parse a request body, namespace-stripped; MalformedXML for anything unsafe or broken.

    A document with no ``<!`` has no DTD, so it can declare no entity and name no external
    one (XML 1.0 §2.8: the document type declaration is the only place for either): it is
    parsed by ElementTree's C parser, several times faster on a 1,000-entry listing.  Any
    other (a DTD, a comment, CDATA) goes through defusedxml, which refuses DTDs and
    entities."""
    if len(body) > max_size:
        raise MalformedXML()
    try:
        if b"<!" not in body:
            unqualified = _without_default_namespace(body)
            if unqualified is not None:
                return ET.fromstring(unqualified)
            root = ET.fromstring(body)
        else:
            root = DET.fromstring(body, forbid_dtd=True, forbid_entities=True,
                                  forbid_external=True)
    except (ET.ParseError, DefusedXmlException, ValueError):
        raise MalformedXML() from None
    for el in root.iter():
        if isinstance(el.tag, str) and el.tag.startswith("{"):
            el.tag = el.tag.split("}", 1)[1]
    return root


_DEFAULT_NAMESPACE = re.compile(rb"""\sxmlns\s*=\s*(?:"[^"<]*"|'[^'<]*')""")


def _without_default_namespace(body: bytes) -> bytes | None:
    """``body`` without its root element's default namespace declaration, where that is
    its only namespace declaration (as in every S3 document): parsed, it is the
    namespace-stripped tree, without a pass over every element to strip it.  None for
    any other document (none, or more than one declaration; a declaration elsewhere)."""
    first = body.find(b"xmlns")
    if first < 0 or body.find(b"xmlns", first + 5) >= 0:
        return None
    start = body.find(b"<")
    while start >= 0 and body.startswith(b"<?", start):     # the XML declaration
        end = body.find(b"?>", start)
        start = -1 if end < 0 else body.find(b"<", end + 2)
    declared = _DEFAULT_NAMESPACE.search(body, max(start, 0))
    if start < 0 or declared is None or declared.start() != first - 1 \
            or b">" in body[start:declared.start()]:
        return None
    return body[:declared.start()] + body[declared.end():]


def child_text(el: ET.Element, tag: str) -> str | None:
    found = el.find(tag)
    return None if found is None else (found.text or "")

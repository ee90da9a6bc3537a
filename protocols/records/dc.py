"""Dublin Core in the SRU `info:srw/schema/1/dc-v1.1` form (srw_dc:dc with dc:* elements)."""
from __future__ import annotations

from typing import Iterable

from lxml import etree

from protocols.records.marcxml import xml_text

DC_NAMESPACE = "http://purl.org/dc/elements/1.1/"
SRW_DC_NAMESPACE = "info:srw/schema/1/dc-schema"

DC_ELEMENTS = (
    "title", "creator", "subject", "description", "publisher", "contributor", "date", "type",
    "format", "identifier", "source", "language", "relation", "coverage", "rights",
)


def dc_element(values: Iterable[tuple[str, str]]) -> etree._Element:
    """`values` are (element name, text) pairs in output order; names outside DC 1.1 raise ValueError."""
    root = etree.Element(f"{{{SRW_DC_NAMESPACE}}}dc", nsmap={"srw_dc": SRW_DC_NAMESPACE, "dc": DC_NAMESPACE})
    for name, text in values:
        if name not in DC_ELEMENTS:
            raise ValueError(f"{name!r} is not a Dublin Core 1.1 element")
        etree.SubElement(root, f"{{{DC_NAMESPACE}}}{name}").text = xml_text(text)
    return root

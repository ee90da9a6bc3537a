"""MARCXML: MARC21 records as MARC21 slim; UNIMARC/CNMARC records in the UNIMARC XML form.

The UNIMARC XML form is the MARC21 slim structure (leader, controlfield, datafield/subfield)
in the namespace `info:srw/schema/8/unimarcxml-v0.1`, as Aleph and dp2 SRU servers deliver
UNIMARC: element names and attributes are identical, only the namespace tells the format.
"""
from __future__ import annotations

import functools
import re
from typing import Any

from lxml import etree

from protocols.records.marcjson import indicator, leader

MARC21_SLIM_NAMESPACE = "http://www.loc.gov/MARC21/slim"
UNIMARC_XML_NAMESPACE = "info:srw/schema/8/unimarcxml-v0.1"


def marcxml_element(record: dict[str, Any], *, unimarc: bool = False) -> etree._Element:
    """One `<record>` element (no collection wrapper)."""
    return etree.fromstring(marcxml_bytes(record, unimarc=unimarc))


def marcxml_bytes(record: dict[str, Any], *, unimarc: bool = False) -> bytes:
    """One `<record>` element (no collection wrapper) serialized in UTF-8, without an XML
    declaration. Written as text, not through an element tree: building the tree of a record
    with holdings took 0.2 ms, most of what rendering a record never seen before costs."""
    namespace = UNIMARC_XML_NAMESPACE if unimarc else MARC21_SLIM_NAMESPACE
    parts = [f'<record xmlns="{namespace}"><leader>{_text(leader(record))}</leader>']
    append = parts.append
    # The walk of `marcjson.fields`, inlined: its objects were a third of this function's time.
    for entry in record.get("fields", ()):
        if not isinstance(entry, dict) or len(entry) != 1:
            continue
        for tag, body in entry.items():
            tag = _attribute(str(tag))
            if not isinstance(body, dict):
                append(f'<controlfield tag="{tag}">{_text("" if body is None else str(body))}</controlfield>')
                continue
            append(f'<datafield tag="{tag}" ind1="{_attribute(indicator(body.get("ind1")))}" '
                   f'ind2="{_attribute(indicator(body.get("ind2")))}">')
            for sub in body.get("subfields", ()):
                if isinstance(sub, dict):
                    for code, value in sub.items():
                        append(f'<subfield code="{_attribute(str(code))}">{_text(str(value))}</subfield>')
            append("</datafield>")
    append("</record>")
    return "".join(parts).encode("utf-8")


# The characters XML 1.0 cannot carry: C0 controls other than tab/newline/return, surrogates,
# U+FFFE and U+FFFF.
_NOT_XML_CHARACTERS = "\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff"
_NOT_XML = re.compile(f"[{_NOT_XML_CHARACTERS}]")


# What text or an attribute value cannot hold as it is: markup characters, and characters that
# need a character reference (a raw CR or, in an attribute, tab and newline are normalized away
# by parsers) or cannot be carried at all.
_TEXT_SPECIAL = re.compile(f"[&<>\r{_NOT_XML_CHARACTERS}]")
_ATTRIBUTE_SPECIAL = re.compile(f'[&<>"\t\n\r{_NOT_XML_CHARACTERS}]')
_REFERENCES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\t": "&#9;", "\n": "&#10;", "\r": "&#13;"}


def _text(value: str) -> str:
    if _TEXT_SPECIAL.search(value) is None:   # almost every value: no copy
        return value
    return _TEXT_SPECIAL.sub(lambda m: _REFERENCES.get(m.group(), ""), value)


@functools.lru_cache(maxsize=4096)
def _attribute(value: str) -> str:
    """(Tags, indicators and subfield codes: a few hundred different values, a hundred a record.)"""
    if _ATTRIBUTE_SPECIAL.search(value) is None:
        return value
    return _ATTRIBUTE_SPECIAL.sub(lambda m: _REFERENCES.get(m.group(), ""), value)


def xml_text(value: str) -> str:
    """Drop the characters XML 1.0 cannot carry (C0 controls such as MARC delimiters left in data)."""
    if _NOT_XML.search(value) is None:   # almost every value: no copy
        return value
    return _NOT_XML.sub("", value)

"""MARCXML: MARC21 records as MARC21 slim; UNIMARC/CNMARC records in the UNIMARC XML form.

The UNIMARC XML form is the MARC21 slim structure (leader, controlfield, datafield/subfield)
in the namespace `info:srw/schema/8/unimarcxml-v0.1`, as Aleph and dp2 SRU servers deliver
UNIMARC: element names and attributes are identical, only the namespace tells the format.
"""
from __future__ import annotations

import re
from typing import Any

from lxml import etree

from protocols.records.marcjson import ControlField, fields, leader

MARC21_SLIM_NAMESPACE = "http://www.loc.gov/MARC21/slim"
UNIMARC_XML_NAMESPACE = "info:srw/schema/8/unimarcxml-v0.1"


def marcxml_element(record: dict[str, Any], *, unimarc: bool = False) -> etree._Element:
    """One `<record>` element (no collection wrapper)."""
    namespace = UNIMARC_XML_NAMESPACE if unimarc else MARC21_SLIM_NAMESPACE
    root = etree.Element(f"{{{namespace}}}record", nsmap={None: namespace})
    etree.SubElement(root, f"{{{namespace}}}leader").text = xml_text(leader(record))
    for field in fields(record):
        if isinstance(field, ControlField):
            control = etree.SubElement(root, f"{{{namespace}}}controlfield", tag=field.tag)
            control.text = xml_text(field.value)
            continue
        data = etree.SubElement(root, f"{{{namespace}}}datafield", tag=field.tag, ind1=field.ind1, ind2=field.ind2)
        for code, value in field.subfields:
            sub = etree.SubElement(data, f"{{{namespace}}}subfield", code=code)
            sub.text = xml_text(value)
    return root


# The characters XML 1.0 cannot carry: C0 controls other than tab/newline/return, surrogates,
# U+FFFE and U+FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(value: str) -> str:
    """Drop the characters XML 1.0 cannot carry (C0 controls such as MARC delimiters left in data)."""
    if _NOT_XML.search(value) is None:   # almost every value: no copy
        return value
    return _NOT_XML.sub("", value)

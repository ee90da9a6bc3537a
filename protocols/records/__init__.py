"""Pure record serializations: MARC-in-JSON dicts and plain data in, bytes or XML out.

Nothing here knows about union records, stores or networks: `federation.records` builds the
presentation data (MARC with holdings, Dublin Core elements, ISO 20775 holdings) and these
modules only write it in the standard forms.
"""
from protocols.records.dc import DC_NAMESPACE, SRW_DC_NAMESPACE, dc_element
from protocols.records.iso2709 import to_iso2709
from protocols.records.iso20775 import ISO20775_NAMESPACE, HoldingsCopy, HoldingsLocation, iso20775_element
from protocols.records.marcxml import MARC21_SLIM_NAMESPACE, UNIMARC_XML_NAMESPACE, marcxml_bytes, marcxml_element
from protocols.records.sutrs import to_sutrs

__all__ = [
    "DC_NAMESPACE",
    "SRW_DC_NAMESPACE",
    "ISO20775_NAMESPACE",
    "MARC21_SLIM_NAMESPACE",
    "UNIMARC_XML_NAMESPACE",
    "HoldingsCopy",
    "HoldingsLocation",
    "dc_element",
    "iso20775_element",
    "marcxml_bytes",
    "marcxml_element",
    "to_iso2709",
    "to_sutrs",
]

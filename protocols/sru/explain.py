"""ZeeRex 2.0 explain records, written from plain data the application builds from its configuration."""
from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

ZEEREX_NS = "http://explain.z3950.org/dtd/2.0/"


@dataclass(frozen=True)
class ExplainIndex:
    id: str
    title: str
    names: tuple[tuple[str, str], ...]     # (context set prefix, index name)
    bib1: tuple[int, ...] = ()
    search: bool = True
    scan: bool = False
    sort: bool = False
    facet: bool = False


@dataclass(frozen=True)
class ExplainSchema:
    identifier: str
    name: str
    title: str
    sort: bool = False


@dataclass
class ExplainInfo:
    host: str
    port: int
    database: str
    version: str
    titles: dict[str, str]                          # language -> title
    description: dict[str, str] = field(default_factory=dict)
    context_sets: dict[str, str] = field(default_factory=dict)
    indexes: list[ExplainIndex] = field(default_factory=list)
    schemas: list[ExplainSchema] = field(default_factory=list)
    default_schema: str = ""
    default_records: int = 10
    maximum_records: int = 100
    maximum_terms: int = 100
    result_set_ttl: int = 0
    databases: list[tuple[str, str]] = field(default_factory=list)  # (path name, title): other databases
    supports: list[tuple[str, str]] = field(default_factory=list)    # (type, text) capability flags


def explain_element(info: ExplainInfo) -> etree._Element:
    def sub(parent: etree._Element, tag: str, text: object | None = None, /, **attributes: str) -> etree._Element:
        element = etree.SubElement(parent, f"{{{ZEEREX_NS}}}{tag}", **attributes)
        if text is not None:
            element.text = str(text)
        return element

    root = etree.Element(f"{{{ZEEREX_NS}}}explain", nsmap={None: ZEEREX_NS})
    server = sub(root, "serverInfo", protocol="SRU", version=info.version, transport="http", method="GET POST")
    sub(server, "host", info.host)
    sub(server, "port", info.port)
    sub(server, "database", info.database)
    database = sub(root, "databaseInfo")
    for n, (language, title) in enumerate(info.titles.items()):
        attributes = {"lang": language}
        if n == 0:
            attributes["primary"] = "true"
        sub(database, "title", title, **attributes)
    for language, text in info.description.items():
        sub(database, "description", text, lang=language)
    index_info = sub(root, "indexInfo")
    for prefix, uri in info.context_sets.items():
        sub(index_info, "set", name=prefix, identifier=uri)
    for index in info.indexes:
        element = sub(index_info, "index", id=index.id, search=_flag(index.search), scan=_flag(index.scan),
                      sort=_flag(index.sort))
        sub(element, "title", index.title, lang="en")
        for n, (prefix, name) in enumerate(index.names):
            mapping = sub(element, "map", primary="true") if n == 0 else sub(element, "map")
            sub(mapping, "name", name, set=prefix)
        for use in index.bib1:
            sub(sub(element, "map"), "attr", use, type="1", set="bib1")
        if index.facet:
            sub(element, "configInfo").append(_supports("facet", "true"))
    schema_info = sub(root, "schemaInfo")
    for schema in info.schemas:
        element = sub(schema_info, "schema", identifier=schema.identifier, name=schema.name,
                      retrieve="true", sort=_flag(schema.sort))
        sub(element, "title", schema.title, lang="en")
    config = sub(root, "configInfo")
    sub(config, "default", info.default_records, type="numberOfRecords")
    if info.default_schema:
        sub(config, "default", info.default_schema, type="retrieveSchema")
    sub(config, "default", "cql.serverChoice", type="index")
    sub(config, "default", "=", type="relation")
    sub(config, "setting", info.maximum_records, type="maximumRecords")
    sub(config, "setting", info.maximum_terms, type="maximumTerms")
    if info.result_set_ttl:
        sub(config, "setting", info.result_set_ttl, type="resultSetTTL")
    for kind, text in info.supports:
        config.append(_supports(kind, text))
    for name, title in info.databases:
        sub(config, "supports", f"{name}: {title}", type="database")
    return root


def _supports(kind: str, text: str) -> etree._Element:
    element = etree.Element(f"{{{ZEEREX_NS}}}supports", type=kind)
    element.text = text
    return element


def _flag(value: bool) -> str:
    return "true" if value else "false"

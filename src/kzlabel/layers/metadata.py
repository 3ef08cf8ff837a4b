"""XMP (ISO 16684) for every format that carries it: build, merge and read kzlabel's properties.

Merging keeps every other property of an existing packet: kzlabel's own properties are removed wherever they sit
(element or attribute form, any rdf:Description) and written again in one rdf:Description of their own, so marking
twice never duplicates a field. A packet that does not parse is replaced by a fresh one (the caller decides whether
that is acceptable).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from xml.etree import ElementTree as ET

from ..label import Label

__all__ = ["LABEL_PROPS", "NS", "TRAINING_PROPS", "label_values", "merge_xmp", "training_values", "xmp_values"]

NS = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "Iptc4xmpExt": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/",
    "TC260": "http://www.tc260.org.cn/ns/AIGC/1.0/",
    "kzlabel": "http://kzlabel.kz/ns/1.0/",
    "plus": "http://ns.useplus.org/ldf/xmp/1.0/",
    "tdm": "http://www.w3.org/ns/tdmrep/",
}
LABEL_PROPS = (
    ("Iptc4xmpExt", "DigitalSourceType"),
    ("Iptc4xmpExt", "AISystemUsed"),
    ("Iptc4xmpExt", "AISystemVersionUsed"),
    ("TC260", "AIGC"),
    ("kzlabel", "Label"),
)
TRAINING_PROPS = (("plus", "DataMining"), ("tdm", "reservation"), ("tdm", "policy"))


# --- XMP -----------------------------------------------------------------------------------------------------------
def _q(prefix: str, name: str) -> str:
    return f"{{{NS[prefix]}}}{name}"


def _parse_xmp(packet: bytes | None) -> ET.Element | None:
    if not packet:
        return None
    try:
        for prefix, uri in re.findall(rb'xmlns:([A-Za-z0-9_.-]+)="([^"]+)"', packet):
            ET.register_namespace(prefix.decode(), uri.decode())
        root = ET.fromstring(packet.strip().lstrip(b"\xef\xbb\xbf"))
    except (ET.ParseError, ValueError):
        return None
    return root


def _rdf(root: ET.Element | None) -> ET.Element:
    if root is not None:
        rdf = root if root.tag == _q("rdf", "RDF") else root.find(".//" + _q("rdf", "RDF"))
        if rdf is not None:
            return rdf
    meta = ET.Element(_q("x", "xmpmeta"))
    return ET.SubElement(meta, _q("rdf", "RDF"))


def xmp_values(packet: bytes | None) -> dict[str, str]:
    """kzlabel-relevant XMP properties (element or attribute form) as {"prefix:Name": value}."""
    root = _parse_xmp(packet)
    out: dict[str, str] = {}
    if root is None:
        return out
    for desc in root.iter(_q("rdf", "Description")):
        for prefix, name in LABEL_PROPS + TRAINING_PROPS:
            key = _q(prefix, name)
            if key in desc.attrib:
                out[f"{prefix}:{name}"] = desc.attrib[key]
            el = desc.find(key)
            if el is not None:
                text = el.text or ""
                if not text.strip():  # a resource form: <x rdf:resource="..."/> or a single rdf:li
                    text = el.get(_q("rdf", "resource"), "") or "".join(
                        (li.text or "") for li in el.iter(_q("rdf", "li"))
                    )
                out[f"{prefix}:{name}"] = text.strip()
    return out


def merge_xmp(
    packet: bytes | None, values: Mapping[tuple[str, str], str], replace: tuple[tuple[str, str], ...]
) -> bytes:
    """Set ``values`` in an XMP packet, first removing every ``replace`` property; all else is kept."""
    root = _parse_xmp(packet)
    rdf = _rdf(root)
    for desc in list(rdf.iter(_q("rdf", "Description"))):
        for prefix, name in replace:
            desc.attrib.pop(_q(prefix, name), None)
            for el in desc.findall(_q(prefix, name)):
                desc.remove(el)
    desc = ET.SubElement(rdf, _q("rdf", "Description"), {_q("rdf", "about"): ""})
    for (prefix, name), value in values.items():
        ET.SubElement(desc, _q(prefix, name)).text = value
    for prefix, uri in NS.items():
        ET.register_namespace(prefix, uri)
    top = root if root is not None and root.tag == _q("x", "xmpmeta") else None
    if top is None:
        top = ET.Element(_q("x", "xmpmeta"))
        top.append(rdf)
    body = ET.tostring(top, encoding="unicode")
    return ('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n' + body + '\n<?xpacket end="w"?>').encode(
        "utf-8"
    )


def label_values(label: Label, token: str) -> dict[tuple[str, str], str]:
    values = {("Iptc4xmpExt", "DigitalSourceType"): label.source_type, ("Iptc4xmpExt", "AISystemUsed"): label.system}
    if label.system_version:
        values[("Iptc4xmpExt", "AISystemVersionUsed")] = label.system_version
    values[("TC260", "AIGC")] = label.aigc_json(token)
    values[("kzlabel", "Label")] = token
    return values


def training_values(policy: Any) -> dict[tuple[str, str], str]:
    """PLUS DataMining and TDMRep properties for a rights-holder's TrainingPolicy."""
    values = {("plus", "DataMining"): policy.plus_data_mining(), ("tdm", "reservation"): policy.tdm_reservation()}
    if policy.policy_url:
        values[("tdm", "policy")] = policy.policy_url
    return values

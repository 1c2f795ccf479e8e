"""iHub's wire: the ``CallStatus`` envelope, its XML-to-JSON artefacts, JSON or XML either way.

iHub is an XML service rendered as JSON, and it shows [OBS]: under ``List`` a list of one
element is an object (``"DispatchLineItem": {...}``, several: an array), and an empty value is
``{}`` — both knobs (``single_as_object``, ``empty_as_object``). Formats [DOC]: a POST answers
in its Content-Type's format, a GET in ``Accept``'s, XML when there is none; a v1 path ending
``.json`` answers JSON [OBS]. Request bodies are read as JSON or XML, and a list arriving as an
object (the same artefact, or any XML element that occurs once) is read as a list of one.
"""

from __future__ import annotations

from typing import Any
from xml.etree.ElementTree import Element, SubElement, tostring

import msgspec
from aiohttp import web
from defusedxml import ElementTree

JSON, XML = "application/json", "application/xml"
_ENCODE = msgspec.json.Encoder().encode


def call_status(success: bool, code: int = 0, message: str = "") -> dict[str, Any]:
    return {"CallStatus": {"Success": success, "Code": code, "Message": message}}


def shaped(value: Any, *, single_as_object: bool, empty_as_object: bool) -> Any:
    """``value`` as iHub renders it: lists under ``List`` collapsed, empty texts as ``{}``."""

    def walk(node: Any, key: str, parent: str) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, k, key) for k, v in node.items()}
        if isinstance(node, list | tuple):
            items = [walk(v, "", "") for v in node]
            collapse = parent == "List" and single_as_object and len(items) == 1
            return items[0] if collapse else items
        if empty_as_object and node == "":  # (an explicit null stays null [OBS v3])
            return {}
        return node

    return walk(value, "", "")


def answer_format(request: web.Request) -> str:
    accept = request.headers.get("Accept", "")
    if request.path.endswith(".json") or "json" in accept:
        return JSON
    if "xml" in accept:
        return XML
    if request.method == "POST":
        return XML if "xml" in request.content_type else JSON
    return XML  # a GET without Accept [DOC]


def respond(request: web.Request, body: dict[str, Any], status: int = 200) -> web.Response:
    if answer_format(request) == XML:
        inner = body["Response"] if set(body) == {"Response"} else body  # (v1's wrapper)
        return web.Response(body=to_xml("Response", inner), status=status, content_type=XML)
    return web.Response(body=_ENCODE(body), status=status, content_type=JSON)


def encode_push(body: dict[str, Any], fmt: str) -> bytes:
    """A push body ``{"Responses": [{"Response": ...}, ...]}`` as JSON, or as XML
    ``<Responses><Response>...</Response>...</Responses>``."""
    if fmt == "xml":
        return to_xml("Responses", {"Response": [r["Response"] for r in body["Responses"]]})
    return _ENCODE(body)


def to_xml(root: str, body: dict[str, Any]) -> bytes:
    """``body`` as XML under ``root``: a list is its element repeated; ``{}`` an empty one."""
    top = Element(root)

    def add(parent: Element, key: str, value: Any) -> None:
        if isinstance(value, list | tuple):
            for item in value:
                add(parent, key, item)
            return
        child = SubElement(parent, key)
        if isinstance(value, dict):
            for k, v in value.items():
                add(child, k, v)
        elif isinstance(value, bool):
            child.text = "true" if value else "false"
        elif value is not None:
            child.text = str(value)

    for key, value in body.items():
        add(top, key, value)
    xml: bytes = tostring(top, encoding="utf-8", xml_declaration=True)
    return xml


class Unreadable(ValueError):
    pass


def read_body(raw: bytes, content_type: str) -> dict[str, Any]:
    """A request body as builtins (XML: elements as keys, repeated ones as lists)."""
    try:
        if "xml" in content_type:
            return _from_xml(ElementTree.fromstring(raw))
        body = msgspec.json.decode(raw)
    except (msgspec.DecodeError, ElementTree.ParseError, ValueError) as exc:
        raise Unreadable(str(exc)) from None
    if not isinstance(body, dict):
        raise Unreadable("the body is not an object")
    return body


def _from_xml(element: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for child in element:
        value: Any = _from_xml(child) if len(child) else (child.text or "")
        if child.tag in out:
            previous = out[child.tag]
            out[child.tag] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            out[child.tag] = value
    return out


def many(value: Any) -> list[Any]:
    """A list that may have arrived as one object, or as nothing (``{}``, ``""``, null)."""
    if value is None or value in ({}, ""):
        return []
    return list(value) if isinstance(value, list) else [value]


def text(value: Any) -> str:
    """A scalar as text: numbers as sent (``100083``), ``{}``/null as ``""``."""
    if value is None or isinstance(value, dict | list):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def flag(value: Any) -> bool:
    return value is True or text(value).lower() in ("true", "1", "yes")

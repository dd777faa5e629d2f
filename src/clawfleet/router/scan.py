"""Every string of a request body, values and keys, so nothing the router forwards goes unscanned.

The endpoint extractor (:mod:`clawfleet.router.extract`) knows where the model
reads text; this module does not trust that knowledge for safety. Providers
accept fields the extractor never heard of (``metadata``, tool descriptions,
schemas, ids, ``user``...), and each one is a way out for data. So the router
classifies *every* string value and *every* object key of the body, and the
body it forwards is the same parsed object, rewritten in place.

Two views are classified:

* the **field view**: every string on its own line, an object entry written
  ``key: value`` so a credential under a telling key (``{"password": "x"}``)
  is read in context;
* the **content view**: the model-read texts concatenated with nothing in
  between, as a provider concatenates content parts, so a value split across
  parts or messages (``jane.doe@`` + ``example.org``) is found whole.

Strings the classifier cannot read (inline images, audio, files as base64 or
data URLs, remote image URLs the provider would fetch) are not classified; they
make the request ``opaque`` so routing treats it as ``unscanned_content``.
Bodies nested deeper than :data:`MAX_DEPTH` or holding text that is not valid
Unicode (lone surrogates) are refused: they are never ordinary requests, and
both are ways to make one parser read something another does not.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from clawfleet.router.classifier import UNSCANNED, Finding
from clawfleet.router.extract import OPAQUE_PARTS, Extracted, ExtractError, extract

MAX_DEPTH = 64
# object keys whose presence means the object carries media the provider reads and we cannot
_MEDIA_KEYS = frozenset({"image_url", "input_audio", "file_data", "file_id", "file_url", "video_url", "audio_url"})
_MEDIA_TYPES = OPAQUE_PARTS | {"computer_screenshot", "base64"}


@dataclass
class Segment:
    """One string of the body: ``container[key]`` (a value) or a key of ``container`` (``is_key``)."""

    container: Any
    key: Any
    is_key: bool
    text: str


@dataclass
class BodyScan:
    segments: list[Segment] = field(default_factory=list)
    opaque: bool = False
    text: str = ""
    starts: list[int] = field(default_factory=list)


def _is_media_string(value: str) -> bool:
    return value.startswith("data:") and ";base64," in value[:200]


def _media_object(node: dict[str, Any]) -> bool:
    ntype = node.get("type")
    if isinstance(ntype, str) and ntype in _MEDIA_TYPES:
        # a document whose source is plain text is read by the model like any text
        source = node.get("source")
        return not (ntype == "document" and isinstance(source, dict) and source.get("type") == "text")
    return any(k in node for k in _MEDIA_KEYS)


def _check_text(value: str) -> None:
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ExtractError("the request holds text that is not valid Unicode (a lone surrogate escape)") from None


def scan_body(body: Any) -> BodyScan:
    """Collect every string value and key of ``body`` (a parsed JSON document), iteratively."""
    out = BodyScan()
    pieces: list[str] = []
    pos = 0

    def add(container: Any, key: Any, is_key: bool, text: str, sep: str) -> None:
        nonlocal pos
        _check_text(text)
        out.segments.append(Segment(container, key, is_key, text))
        out.starts.append(pos)
        pieces.append(text)
        pieces.append(sep)
        pos += len(text) + len(sep)

    stack: list[tuple[Any, int, bool]] = [(body, 0, False)]
    while stack:
        node, depth, media = stack.pop()
        if depth > MAX_DEPTH:
            raise ExtractError(f"the request body is nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            media = media or _media_object(node)
            out.opaque = out.opaque or media
            children = []
            for key, value in node.items():
                if isinstance(value, str):
                    add(node, key, True, key, ": ")
                    if media and (key == "data" or _is_media_string(value)):
                        continue
                    if _is_media_string(value):
                        out.opaque = True
                        continue
                    add(node, key, False, value, "\n")
                else:
                    add(node, key, True, key, "\n")
                    if isinstance(value, (dict, list)):
                        children.append(value)
            stack.extend((c, depth + 1, media) for c in reversed(children))
        elif isinstance(node, list):
            children = []
            for index, value in enumerate(node):
                if isinstance(value, str):
                    if _is_media_string(value):
                        out.opaque = True
                        continue
                    add(node, index, False, value, "\n")
                elif isinstance(value, (dict, list)):
                    children.append(value)
            stack.extend((c, depth + 1, media) for c in reversed(children))
    out.text = "".join(pieces)
    return out


@dataclass
class RequestFindings:
    """What classification found in one request, per view, and the classes routing decides on."""

    scan: BodyScan
    content: Extracted
    field_findings: list[Finding]
    content_findings: list[Finding]
    opaque: bool

    @property
    def findings(self) -> list[Finding]:
        return self.field_findings + self.content_findings

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for f in self.field_findings + [f for f in self.content_findings if not _same(f, self.field_findings)]:
            counts[f.type] = counts.get(f.type, 0) + 1
        if self.opaque:
            counts[UNSCANNED] = counts.get(UNSCANNED, 0) + 1
        return counts


def _same(finding: Finding, others: Sequence[Finding]) -> bool:
    return any(o.type == finding.type for o in others)


def content_view(content: Extracted) -> str:
    """The model-read texts as a provider concatenates them (no separator)."""
    return "".join(content.texts)


@dataclass
class PreparedRequest:
    """A request body walked and split into the texts to classify (the field view, and the content view when
    there is more than one model-read text)."""

    scan: BodyScan
    content: Extracted

    def texts(self) -> list[str]:
        views = [self.scan.text]
        if len(self.content.texts) > 1:
            views.append(content_view(self.content))
        return views

    def assemble(self, results: Sequence[list[Finding]]) -> RequestFindings:
        """Findings per text of :meth:`texts`, in that order -> the request's findings."""
        field_findings = results[0]
        content_findings = results[1] if len(results) > 1 else []
        opaque = self.scan.opaque or self.content.opaque
        return RequestFindings(self.scan, self.content, field_findings, content_findings, opaque)


def prepare_request(kind: str, body: Any) -> PreparedRequest:
    """Validate the endpoint shape and walk the body (``ExtractError`` on a bad one)."""
    return PreparedRequest(scan_body(body), extract(kind, body))


def classify_request(kind: str, body: Any, classify: Callable[[str], list[Finding]]) -> RequestFindings:
    """Validate, walk and classify a request body in the calling thread (the CLI, tests)."""
    prepared = prepare_request(kind, body)
    return prepared.assemble([classify(t) for t in prepared.texts()])


def outgoing_text(payload: Any) -> str:
    """The last look before a cloud send reads every string of the body exactly as it is about to be sent."""
    return scan_body(payload).text


def _reject_constant(name: str) -> Any:
    raise ExtractError(f"request body is not valid JSON: {name} is not a JSON number")


def parse_body(raw: bytes) -> Any:
    """Parse a request body strictly: UTF-8, standard JSON only; any failure is an ``ExtractError`` (a 400)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ExtractError(f"request body is not valid UTF-8 (at byte {exc.start})") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ExtractError(f"request body is nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise ExtractError(f"request body is not valid JSON: {exc.msg} ({where})") from None


__all__ = [
    "MAX_DEPTH",
    "BodyScan",
    "PreparedRequest",
    "RequestFindings",
    "Segment",
    "classify_request",
    "content_view",
    "outgoing_text",
    "parse_body",
    "prepare_request",
    "scan_body",
]

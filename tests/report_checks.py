"""Checks that an HTML report from medflow.stages.report is complete and self-contained,
and that building it opens no test split (nor a model): the report only renders.

Standard library at import, so any test (including the end-to-end pipeline test) can use it.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import io
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

STUDY_SECTIONS = (
    "study",
    "dataset",
    "sweep",
    "results",
    "figures",
    "clinical",
    "baselines",
    "representation",
)
VOID_TAGS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)
PNG_PREFIX = "data:image/png;base64,"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MIN_PNG_BYTES = 1024
# Attributes through which a browser fetches something.
FETCHING_ATTRS = frozenset(
    {"src", "srcset", "data", "poster", "background", "action", "formaction"}
)
COMMIT = re.compile(r"^[0-9a-f]{40}(-dirty)?$")
VERSION = re.compile(r"\d+\.\d+")
REQUIRED_PACKAGES = ("python", "torch", "mlflow", "optuna", "pandas", "numpy", "scikit-learn")
ERROR_CLASS = "report-error"
MIN_SECTION_CHARS = 10  # text outside headings


HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})


@dataclass
class _Element:
    tag: str
    id: str | None
    ancestors: tuple[str, ...]  # ids of the enclosing elements, outermost first
    text: list[str] = field(default_factory=list)  # text outside headings
    images: int = 0


class _ReportParser(HTMLParser):
    """Collects every id'd element's text and image count, every image, every problem."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[_Element] = []
        self.by_id: dict[str, _Element] = {}
        self.duplicate_ids: list[str] = []
        self.images: list[str] = []
        self.problems: list[str] = []
        self.error_elements: list[_Element] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        self._check_references(tag, values)
        if tag == "img":
            self.images.append(values.get("src", ""))
            for element in self.stack:
                element.images += 1
        if tag in VOID_TAGS:
            return
        ancestors = tuple(e.id for e in self.stack if e.id is not None)
        element = _Element(tag, values.get("id"), ancestors)
        if element.id is not None:
            if element.id in self.by_id:
                self.duplicate_ids.append(element.id)
            self.by_id[element.id] = element
        if ERROR_CLASS in values.get("class", "").split():
            self.error_elements.append(element)
        self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID_TAGS:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, -1, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        tags = {e.tag for e in self.stack}
        if "style" in tags:
            self._check_css(data, "<style>")
        elif data.strip() and not tags & HEADINGS:
            for element in self.stack:
                element.text.append(data)

    @property
    def errors(self) -> list[str]:
        return [" ".join("".join(e.text).split())[:300] for e in self.error_elements]

    def _check_references(self, tag: str, attrs: dict[str, str]) -> None:
        for name, value in attrs.items():
            if name in FETCHING_ATTRS and not (tag == "img" and value.startswith(PNG_PREFIX)):
                self.problems.append(f"<{tag} {name}={value[:80]!r}> loads an asset")
        if "href" in attrs:
            self._check_href(tag, attrs["href"])
        if "style" in attrs:
            self._check_css(attrs["style"], f"<{tag} style>")
        if tag in ("link", "base", "iframe", "object", "embed", "script") and (
            tag != "script" or "src" in attrs
        ):
            self.problems.append(f"<{tag}> is not allowed in a self-contained report")

    def _check_href(self, tag: str, href: str) -> None:
        if tag != "a":
            self.problems.append(f"<{tag} href={href[:80]!r}>: only <a> may have an href")
        elif not href.startswith(("#", "http://", "https://", "mailto:")):
            # A relative path (or //host, file:) points at a file that is not in the mail.
            self.problems.append(f"<a href={href[:80]!r}> points at a file outside the report")
        elif href.startswith("//"):
            self.problems.append(f"<a href={href[:80]!r}> is protocol-relative")

    def _check_css(self, css: str, where: str) -> None:
        for url in re.findall(r"url\(\s*['\"]?([^'\")]*)", css):
            if not url.startswith("data:"):
                self.problems.append(f"{where} loads url({url[:80]})")
        if "@import" in css:
            self.problems.append(f"{where} uses @import")


def parse_report(html_path: Path) -> _ReportParser:
    parser = _ReportParser()
    parser.feed(Path(html_path).read_text(encoding="utf-8"))
    parser.close()
    return parser


def expected_ids(studies: list[str], classics: bool) -> list[str]:
    ids = [f"{kind}-{name}" for name in studies for kind in STUDY_SECTIONS]
    return [*ids, *(["classics"] if classics else []), "provenance"]


def _check_png(src: str) -> str | None:
    if not src.startswith(PNG_PREFIX):
        return f"image source is not an embedded PNG: {src[:80]!r}"
    try:
        data = base64.b64decode(src.removeprefix(PNG_PREFIX), validate=True)
    except (binascii.Error, ValueError) as exc:
        return f"image is not valid base64: {exc}"
    if not data.startswith(PNG_SIGNATURE):
        return "embedded image is not a PNG"
    if len(data) <= MIN_PNG_BYTES:
        return f"embedded PNG is only {len(data)} bytes"
    return None


def _check_provenance(parser: _ReportParser, allow_unknown_commit: bool) -> list[str]:
    problems = []
    for inner in ("git-commit", "package-versions"):
        element = parser.by_id.get(inner)
        if element is None or "provenance" not in element.ancestors:
            problems.append(f"#provenance has no #{inner}")
    commit_el = parser.by_id.get("git-commit")
    commit = "".join(commit_el.text).strip() if commit_el else ""
    if not (COMMIT.match(commit) or (allow_unknown_commit and commit == "unknown")):
        problems.append(f"provenance has no git commit (found {commit!r})")
    versions = parser.by_id.get("package-versions")
    text = " ".join(versions.text) if versions else ""
    for package in REQUIRED_PACKAGES:
        match = re.search(rf"(?<![\w-]){re.escape(package)}\s+(\S+)", text)
        if not match or not VERSION.match(match.group(1)):
            problems.append(f"provenance lacks the version of {package}")
    return problems


def assert_report_complete(
    html_path: Path, studies: list[str], classics: bool, *, allow_unknown_commit: bool = False
) -> None:
    """Fail with every problem found if the report is incomplete or not self-contained.

    Every expected section exists once and is non-empty; no section shows a build error;
    every ``<img>`` is a base64 PNG data URI over 1 kB; nothing references an external asset
    (only ``<a href>`` may leave the file); provenance shows a git commit and versions.
    ``allow_unknown_commit`` accepts "unknown" for code that is not in a git checkout.
    """
    parser = parse_report(html_path)
    problems = list(parser.problems)
    for section_id in expected_ids(studies, classics):
        element = parser.by_id.get(section_id)
        if element is None:
            problems.append(f"section #{section_id} is missing")
            continue
        body = "".join(element.text).strip()
        if len(body) < MIN_SECTION_CHARS and not element.images:
            problems.append(f"section #{section_id} is empty")
    problems += [f"duplicate id #{i}" for i in parser.duplicate_ids]
    problems += [f"a section failed to build: {e}" for e in parser.errors]
    if not parser.images:
        problems.append("the report has no images")
    for n, src in enumerate(parser.images):
        if (problem := _check_png(src)) is not None:
            problems.append(f"image {n}: {problem}")
    problems += _check_provenance(parser, allow_unknown_commit)
    assert not problems, f"{html_path}: " + "; ".join(problems)


@contextmanager
def recorded_opens() -> Iterator[list[str]]:
    """Every path this process opens meanwhile: open/io.open (so Path.open, read_text, numpy,
    torch.load), os.open, and safetensors' readers (which open files in Rust)."""
    import safetensors
    import safetensors.numpy

    import medflow.data.format as prepared_format

    opened: list[str] = []

    def recording(fn, arg: int = 0):
        def wrapper(*args, **kwargs):
            if len(args) > arg and isinstance(args[arg], str | bytes | os.PathLike):
                opened.append(os.fsdecode(args[arg]))
            return fn(*args, **kwargs)

        return wrapper

    patches = [
        (builtins, "open"),
        (io, "open"),
        (os, "open"),
        (safetensors, "safe_open"),
        (safetensors.numpy, "load_file"),
        (prepared_format, "load_file"),
    ]
    saved = [(owner, name, getattr(owner, name)) for owner, name in patches]
    for owner, name, fn in saved:
        setattr(owner, name, recording(fn))
    try:
        yield opened
    finally:
        for owner, name, fn in saved:
            setattr(owner, name, fn)


def forbidden_reads(opened: list[str], results: Path) -> list[str]:
    """The opened paths the report must not read: any split ``test.*`` under results/data
    (only evaluate-side jobs read the test split) and any trained model file."""
    data = Path(os.path.realpath(Path(results) / "data"))
    bad = []
    for name in opened:
        path = Path(os.path.realpath(name))
        if (data in path.parents and path.name.startswith("test.")) or path.suffix == ".pt":
            bad.append(name)
    return bad


def assert_report_opens_no_test_split(results: Path, config: Path) -> Path:
    """Build the report of the finished run in ``results`` (config file ``config``) in this
    process, recording every open: none may be a test split or a model; returns the report."""
    from medflow.config.load import load_config
    from medflow.layout import Layout
    from medflow.stages import report
    from medflow.stages.context import StageContext

    cfg = load_config(config)
    ctx = StageContext(layout=Layout(Path(results)), tracking=cfg.tracking)
    with recorded_opens() as opened:
        path = report.run(ctx, cfg, Path(config).read_text())
    assert any(Path(p).name == "meta.json" for p in opened), "the recorder saw no read"
    bad = forbidden_reads(opened, results)
    assert not bad, f"the report job opened test data or a model: {bad}"
    return path

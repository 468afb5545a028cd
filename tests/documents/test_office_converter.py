"""The converter and the sniffer without the app: formats told apart by content, legacy Office
files, links never fetched, and LibreOffice never outliving the process that started it."""

import http.server
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pymupdf
import pytest

from backend.documents import office
from backend.documents.sniff import (
    DOCX,
    EML,
    HTML,
    MSG,
    ODT,
    OTHER_CONTAINER,
    PPTX,
    RTF,
    TEXT,
    XLSX,
    ZIP,
    sniff,
)
from backend.errors import UnsupportedFile
from tests.documents.conftest import zip_with_members
from tests.documents.intake import alive
from tests.fixtures.formats import (
    _odf,
    docx_bytes,
    eml_bytes,
    html_bytes,
    odt_bytes,
    pptx_bytes,
    rtf_bytes,
    xlsx_bytes,
)

BINARY = office.soffice_binary()
LIMITS = {"max_entries": 1000, "max_total_bytes": 50 << 20}


def test_formats_are_told_apart_by_content():
    assert sniff(docx_bytes("x")) == DOCX
    assert sniff(xlsx_bytes({"A": [["x"]]})) == XLSX
    assert sniff(pptx_bytes(("t", "b"))) == PPTX
    assert sniff(odt_bytes("x")) == ODT
    assert sniff(rtf_bytes("x")) == RTF
    assert sniff(eml_bytes("Hello", "body")) == EML
    assert sniff(html_bytes("T")) == HTML
    # A zip that holds Office files is a zip (its files become documents), not an Office file.
    assert sniff(zip_with_members({"a.docx": docx_bytes("x")})) == ZIP
    # Other containers with the same markers are refused rather than unpacked.
    assert sniff(_odf("application/epub+zip", "")) == OTHER_CONTAINER
    assert sniff(zip_with_members({"[Content_Types].xml": b"<Types/>"})) == OTHER_CONTAINER
    with pytest.raises(UnsupportedFile, match="not a Word"):
        office.check(_odf("application/epub+zip", ""), OTHER_CONTAINER, **LIMITS)


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"Subject: lunch\nTo: bob@example.com\n\nSee you at noon.", EML),
        (b"Received: from mx\n by x\nFrom: a@b\nDate: today\n\nHi", EML),
        (b"Note: buy milk\nand bread\n", TEXT),  # one header-like line is not an e-mail
        (b"Total: 12\nSubject to change\n\nx", TEXT),
        (b"<p>Hi <b>there</b></p><br><div>x</div>", HTML),
        (b"<!-- saved from url=(0041)x -->\n<!DOCTYPE html><html></html>", HTML),
        (b"<?xml version='1.0'?><invoice><total>3</total></invoice>", TEXT),
        (b"a < b and b > c", TEXT),
    ],
)
def test_text_like_uploads(data, kind):
    assert sniff(data) == kind


def test_msg_is_not_mistaken_for_a_legacy_office_file():
    dataset = Path(__file__).resolve().parents[3] / "shared/datasets/formats-v1/msg"
    files = sorted(dataset.glob("*.msg"))
    if not files:
        pytest.skip("formats-v1 is not beside this checkout")
    assert {sniff(f.read_bytes()) for f in files} == {MSG}


def _legacy(data: bytes, source_ext: str, target: str, tmp_path: Path) -> bytes:
    """A legacy binary Office file written by LibreOffice itself from a modern one."""
    source = tmp_path / f"in.{source_ext}"
    source.write_bytes(data)
    profile = tmp_path / "profile"
    for _ in range(2):
        done = subprocess.run(
            [
                BINARY,
                "--headless",
                "--norestore",
                f"-env:UserInstallation={profile.as_uri()}",
                "--convert-to",
                target,
                "--outdir",
                str(tmp_path / "out"),
                str(source),
            ],
            capture_output=True,
            timeout=120,
        )
        if done.returncode != office.FIRST_START_EXIT:
            break
    return next((tmp_path / "out").glob("in.*")).read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("make", "ext", "target", "fmt", "marker"),
    [
        (lambda: docx_bytes("Legacy Word letter"), "docx", "doc", "doc", "Legacy Word letter"),
        (lambda: xlsx_bytes({"S": [["Legacy sheet"]]}), "xlsx", "xls", "xls", "Legacy sheet"),
        (lambda: pptx_bytes(("Legacy deck", "b")), "pptx", "ppt", "ppt", "Legacy deck"),
    ],
)
def test_legacy_office_files_are_recognised_and_converted(tmp_path, make, ext, target, fmt, marker):
    data = _legacy(make(), ext, target, tmp_path)
    kind = sniff(data)
    assert kind is not None and kind.format == fmt
    office.check(data, kind, **LIMITS)
    converted = office.convert(data, kind, timeout=120, binary=BINARY)
    with pymupdf.open(stream=converted.pdf, filetype="pdf") as pdf:
        assert marker in pdf[0].get_text()
    assert converted.peak_rss_mb > 10


class _Counting(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        _Counting.hits.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_links_to_external_resources_are_never_fetched():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        # A linked (not embedded) picture and a linked section: Writer would load both.
        body = (
            '<office:text xmlns:xlink="http://www.w3.org/1999/xlink" '
            'xmlns:section="urn:oasis:names:tc:opendocument:xmlns:text:1.0">'
            "<text:p>Linked content below</text:p>"
            '<text:p><draw:frame svg:width="5cm" svg:height="5cm">'
            f'<draw:image xlink:href="{url}/logo.png" xlink:type="simple" xlink:show="embed" '
            'xlink:actuate="onLoad"/></draw:frame></text:p>'
            '<text:section text:name="s1"><text:section-source '
            f'xlink:href="{url}/section.odt" xlink:type="simple"/></text:section>'
            "</office:text>"
        )
        data = _odf("application/vnd.oasis.opendocument.text", body)
        converted = office.convert(data, sniff(data), timeout=120, binary=BINARY)
        with pymupdf.open(stream=converted.pdf, filetype="pdf") as pdf:
            assert "Linked content below" in pdf[0].get_text()
        assert _Counting.hits == []
    finally:
        server.shutdown()


def test_libreoffice_dies_with_the_process_that_started_it(tmp_path):
    """The DocSift process is killed (SIGKILL: nothing of it runs to clean up) in the middle of a
    conversion; the converter it started must not be left running."""
    pidfile = tmp_path / "pid"
    fake = tmp_path / "soffice.bin"
    # exec: the converter is the very process DocSift started (as soffice.bin is).
    fake.write_text(f"#!/bin/sh\necho $$ > {pidfile}\nexec sleep 300\n")
    fake.chmod(0o755)
    code = (
        "from backend.documents import office; from backend.documents.sniff import RTF\n"
        f"office.convert(b'{{\\\\rtf1 x}}', RTF, timeout=600, binary={str(fake)!r})\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], env=os.environ.copy())
    try:
        deadline = time.monotonic() + 60
        while not pidfile.exists() or not pidfile.read_text().strip():
            assert time.monotonic() < deadline and parent.poll() is None
            time.sleep(0.1)
        converter = int(pidfile.read_text())
        assert alive(converter)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while alive(converter):
            assert time.monotonic() < deadline, "the converter outlived DocSift"
            time.sleep(0.1)
    finally:
        parent.kill()


def test_container_parts_limit():
    parts = {f"word/media/p{i}.xml": b"<x/>" for i in range(30)}
    with zipfile.ZipFile(__import__("io").BytesIO(docx_bytes("x"))) as source:
        parts.update({i.filename: source.read(i) for i in source.infolist()})
    data = zip_with_members(parts)
    with pytest.raises(Exception, match="parts; the limit is 20"):
        office.check(data, DOCX, max_entries=20, max_total_bytes=50 << 20)

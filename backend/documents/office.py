"""Office files (Word, Excel, PowerPoint, OpenDocument, RTF, legacy DOC/XLS/PPT) as PDFs, rendered
by LibreOffice headless in a subprocess.

What the converter is allowed to do is decided here, not by the document:
- checked before conversion: an encrypted file, an unreadable container, or a zip bomb inside an
  OOXML/ODF container (entry count and sizes from the directory, then every entry inflated in
  bounded chunks, so a lying directory is caught too) is refused with a clear reason;
- one conversion at a time per process, in its own profile directory whose settings disable
  macros, never update links to external data, and send any network request to a dead proxy;
- a time limit: past it the whole process group is killed; and LibreOffice never outlives the
  DocSift process (thread, in fact) that started it (PR_SET_PDEATHSIG).

Spreadsheets are exported as LibreOffice prints them: each sheet on as many pages as its print
area needs (one for a small sheet). Its `SinglePageSheets` export (one page per sheet) was tried
and dropped: it cuts the page at the last used column, clipping text that overflows into empty
cells beyond it.
"""

import atexit
import contextlib
import ctypes
import io
import logging
import os
import resource
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import olefile

from backend.documents.sniff import (
    DOC,
    ENCRYPTED_OFFICE,
    ODP,
    ODS,
    ODT,
    OTHER_CONTAINER,
    PPT,
    XLS,
    FileKind,
)
from backend.errors import PayloadTooLarge, UnsupportedFile

log = logging.getLogger(__name__)

CHUNK = 1 << 16
FIRST_START_EXIT = 81  # soffice.bin's "profile created, start me again"
_PR_SET_PDEATHSIG = 1
# Written into the profile before LibreOffice first starts (registrymodifications.xcu).
_SETTINGS = {
    ("/org.openoffice.Office.Common/Security/Scripting", "DisableMacrosExecution"): "true",
    ("/org.openoffice.Office.Common/Security/Scripting", "MacroSecurityLevel"): "3",
    ("/org.openoffice.Office.Common/Security/Scripting", "BlockUntrustedRefererLinks"): "true",
    ("/org.openoffice.Office.Common/Security/Scripting", "CheckDocumentEvents"): "true",
    # Links to other files or URLs: Writer 0 = never update, Calc 1 = never.
    ("/org.openoffice.Office.Writer/Content/Update", "Link"): "0",
    ("/org.openoffice.Office.Calc/Content/Update", "Link"): "1",
    # Anything that still tries the network goes to a proxy on the discard port: refused at once.
    ("/org.openoffice.Inet/Settings", "ooInetProxyType"): "2",
    ("/org.openoffice.Inet/Settings", "ooInetNoProxy"): "",
    ("/org.openoffice.Inet/Settings", "ooInetHTTPProxyName"): "127.0.0.1",
    ("/org.openoffice.Inet/Settings", "ooInetHTTPProxyPort"): "9",
    ("/org.openoffice.Inet/Settings", "ooInetHTTPSProxyName"): "127.0.0.1",
    ("/org.openoffice.Inet/Settings", "ooInetHTTPSProxyPort"): "9",
    ("/org.openoffice.Inet/Settings", "ooInetFTPProxyName"): "127.0.0.1",
    ("/org.openoffice.Inet/Settings", "ooInetFTPProxyPort"): "9",
    ("/org.openoffice.Office.Common/Misc", "UseLocking"): "false",
}

# One conversion at a time in this process (LibreOffice takes ~200 MB and both cores' worth of
# work per conversion); a thread lock, so it holds across event loops.
_LOCK = threading.Lock()
_PROFILE: Path | None = None


class ConversionFailed(UnsupportedFile):
    """LibreOffice could not render the file; the message says why."""


@dataclass(frozen=True)
class Conversion:
    pdf: bytes
    seconds: float
    peak_rss_mb: float  # LibreOffice's own peak resident memory


# --- checks before conversion ------------------------------------------------------------------


def check(data: bytes, kind: FileKind, *, max_entries: int, max_total_bytes: int) -> None:
    """Refuse what must not reach LibreOffice: encrypted files, broken or unsupported
    containers, and zip bombs."""
    if kind == ENCRYPTED_OFFICE:
        raise UnsupportedFile("The Office file is encrypted with a password; send it decrypted.")
    if kind == OTHER_CONTAINER:
        raise UnsupportedFile(
            "The zip container is not a Word, Excel, PowerPoint or OpenDocument file "
            "(XPS, Visio, EPUB and OpenDocument drawings are not converted)."
        )
    if kind.format in ("docx", "xlsx", "pptx", "odt", "ods", "odp"):
        _check_container(data, kind, max_entries=max_entries, max_total_bytes=max_total_bytes)
    elif kind in (DOC, XLS, PPT):
        _check_legacy(data, kind)


def _check_container(
    data: bytes, kind: FileKind, *, max_entries: int, max_total_bytes: int
) -> None:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except Exception as error:
        raise UnsupportedFile(f"The {kind.format} file is corrupt: {error}.") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > max_entries:
            raise PayloadTooLarge(
                f"The {kind.format} file holds {len(infos)} parts; the limit is {max_entries}."
            )
        declared = sum(info.file_size for info in infos)
        if declared > max_total_bytes:
            raise PayloadTooLarge(
                f"The {kind.format} file would expand to {declared / 2**20:,.0f} MB; "
                f"the limit is {max_total_bytes / 2**20:,.0f} MB."
            )
        inflated = 0
        manifest = b""
        for info in infos:
            if info.flag_bits & 0x1:
                raise UnsupportedFile(f"The {kind.format} file is encrypted with a password.")
            size = 0
            try:
                with archive.open(info) as stream:
                    while chunk := stream.read(CHUNK):
                        size += len(chunk)
                        inflated += len(chunk)
                        if size > info.file_size or inflated > max_total_bytes:
                            raise PayloadTooLarge(
                                f"The {kind.format} file expands past its declared size "
                                f"(a zip bomb); the limit is {max_total_bytes / 2**20:,.0f} MB."
                            )
                        if info.filename == "META-INF/manifest.xml" and len(manifest) < 1 << 20:
                            manifest += chunk
            except PayloadTooLarge:
                raise
            except Exception as error:
                raise UnsupportedFile(
                    f"The {kind.format} file is corrupt (part '{info.filename}': {error})."
                ) from None
        if kind in (ODT, ODS, ODP) and b"encryption-data" in manifest:
            raise UnsupportedFile(f"The {kind.format} file is encrypted with a password.")


def _check_legacy(data: bytes, kind: FileKind) -> None:
    """Password-protected legacy files: Word's FIB flag, Excel's FILEPASS record, PowerPoint's
    encrypted summary stream."""
    try:
        with olefile.OleFileIO(data) as ole:
            if kind == DOC:
                fib = ole.openstream("WordDocument").read(12)
                (flags,) = struct.unpack_from("<H", fib, 10)
                encrypted = bool(flags & 0x0100)
            elif kind == XLS:
                encrypted = _xls_has_filepass(
                    ole.openstream("Workbook" if ole.exists("Workbook") else "Book").read(1 << 16)
                )
            else:
                encrypted = ole.exists("EncryptedSummary")
    except Exception as error:
        raise UnsupportedFile(f"The {kind.format} file is corrupt: {error}.") from None
    if encrypted:
        raise UnsupportedFile(f"The {kind.format} file is encrypted with a password.")


def _xls_has_filepass(stream: bytes) -> bool:
    """A FILEPASS record (0x002F) among the workbook globals' first records."""
    offset = 0
    for _ in range(200):
        if offset + 4 > len(stream):
            return False
        record, length = struct.unpack_from("<HH", stream, offset)
        if record == 0x002F:
            return True
        if record == 0x000A:  # EOF of the globals substream
            return False
        offset += 4 + length
    return False


# --- conversion --------------------------------------------------------------------------------


def soffice_binary(configured: str = "") -> str | None:
    """soffice.bin itself (not the `soffice` wrapper script, which would stand between
    DocSift and the process to time out and kill), or None when LibreOffice is absent."""
    candidates = [configured] if configured else []
    wrapper = shutil.which("soffice") or shutil.which("libreoffice")
    if wrapper:
        candidates.append(str(Path(wrapper).resolve().parent / "soffice.bin"))
    candidates += [
        "/usr/lib/libreoffice/program/soffice.bin",
        "/opt/libreoffice/program/soffice.bin",
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def convert(data: bytes, kind: FileKind, *, timeout: float, binary: str) -> Conversion:
    """The file as a PDF (blocking: call it in a thread). Raises ConversionFailed with the
    reason (timeout, unreadable file)."""
    with _LOCK:
        profile = _profile()
        with tempfile.TemporaryDirectory(prefix="docsift-convert-") as work:
            source = Path(work) / f"document.{kind.format}"
            source.write_bytes(data)
            out = Path(work) / "out"
            started = time.monotonic()
            deadline = started + timeout
            for _ in range(2):  # a new profile makes the first start exit with 81
                code, peak_kb, stderr = _run(
                    _command(binary, profile, source, out), deadline, timeout
                )
                if code != FIRST_START_EXIT:
                    break
            pdfs = list(out.glob("*.pdf")) if out.exists() else []
            if code != 0 or not pdfs or pdfs[0].stat().st_size == 0:
                log.info("LibreOffice failed (exit %s): %s", code, stderr[-500:])
                raise ConversionFailed(
                    f"LibreOffice could not convert the {kind.format} file "
                    "(it may be corrupt or protected)."
                )
            return Conversion(pdfs[0].read_bytes(), time.monotonic() - started, peak_kb / 1024)


def _command(binary: str, profile: Path, source: Path, out: Path) -> list[str]:
    return [
        binary,
        "--headless",
        "--invisible",
        "--norestore",
        "--nologo",
        "--nodefault",
        "--nolockcheck",
        "--nofirststartwizard",
        f"-env:UserInstallation={profile.as_uri()}",
        "--convert-to",
        "pdf",
        "--outdir",
        str(out),
        str(source),
    ]


def _run(command: list[str], deadline: float, timeout: float) -> tuple[int, int, str]:
    """Run LibreOffice until it exits or the deadline passes; returns its exit code, peak
    resident memory (KB) and the end of its stderr. Past the deadline its process group is
    killed and ConversionFailed raised."""
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,  # its own process group, killed whole on timeout
            preexec_fn=_die_with_parent,
            env=_environment(),
        )
        try:
            while True:
                pid, status, usage = os.wait4(process.pid, os.WNOHANG)
                if pid:
                    process.returncode = os.waitstatus_to_exitcode(status)
                    break
                if time.monotonic() > deadline:
                    raise ConversionFailed(
                        f"The conversion took longer than the {timeout:g} s limit."
                    )
                time.sleep(0.05)
        finally:
            # Whatever happened, nothing of this conversion is left running.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            if process.returncode is None:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(process.pid, 0)
                process.returncode = -signal.SIGKILL
        stderr.seek(0)
        tail = stderr.read()[-4000:].decode("utf-8", "replace")
    return process.returncode, usage.ru_maxrss, tail


def _die_with_parent() -> None:
    """In the child, before exec: be killed when the thread that started us ends (DocSift
    killed, crashed or stopped), so no LibreOffice outlives it."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    # Belt and braces with the profile's proxy setting: no proxy variable leads anywhere real.
    env.update(http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9", no_proxy="")
    env.setdefault("HOME", tempfile.gettempdir())
    return env


def _profile() -> Path:
    """This process's LibreOffice profile: made once, with DocSift's settings, removed at exit."""
    global _PROFILE
    if _PROFILE is None or not _PROFILE.exists():
        root = Path(tempfile.mkdtemp(prefix="docsift-libreoffice-"))
        user = root / "user"
        user.mkdir()
        items = "".join(
            f'<item oor:path="{path}"><prop oor:name="{name}" oor:op="fuse">'
            f"<value>{value}</value></prop></item>\n"
            for (path, name), value in _SETTINGS.items()
        )
        (user / "registrymodifications.xcu").write_text(
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<oor:items xmlns:oor="http://openoffice.org/2001/registry" '
            'xmlns:xs="http://www.w3.org/2001/XMLSchema" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
            f"{items}</oor:items>\n"
        )
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        _PROFILE = root
    return _PROFILE


def self_peak_rss_mb() -> float:
    """This process's own peak resident memory (for the benchmark)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

"""Synthetic MR DICOM series and a same-origin HTTP server for the viewer bundle tests.

The server mimics what the Django reading page will do: it serves the built bundle under
/static/viewer/, a reading page, and blinded DICOM under opaque URLs /read/i/<token>/ that
answer only requests carrying the reader's session cookie.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

SIZE = 128
N_SLICES = 12
PIXEL_SPACING_MM = 0.5
DISC_CENTRE = (64.0, 64.0)  # (x, y) image coordinates, pixel corners at integers
DISC_RADIUS_PX = 40.0
BACKGROUND = 100.0
BACKGROUND_SD = 5.0
DISC_SD = 50.0
SESSION_COOKIE = ("sessionid", "reader-session-7f3a")
# Header text that a blinded viewer must never show.
SECRET_TEXTS = ("DOE^JANE", "CS-R4-SECRET-METHOD", "ACC-991-PRIVATE")

CONTENT_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".wasm": "application/wasm",
    ".json": "application/json",
    ".txt": "text/plain",
}

READING_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Reading</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/viewer/viewer.css">
<style>body { margin: 0; background: #111; } #viewer { width: 900px; height: 620px; }</style>
</head><body>
<div id="viewer"></div>
<script type="module">
import ReconViewer from "/static/viewer/viewer.js";
window.RV = ReconViewer;
</script>
</body></html>
"""


def disc_mean(slice_index: int, scale: float = 1.0) -> float:
    """Nominal disc intensity of a slice (each slice differs so slice mix-ups show)."""
    return scale * (1000.0 + 20.0 * slice_index)


@dataclass
class Series:
    """One synthetic MR series: pixel arrays (S, H, W) uint16 and the file of each slice."""

    pixels: np.ndarray
    files: list[Path]
    tokens: list[str] = field(default_factory=list)


def make_series(
    out_dir: Path, seed: int, scale: float = 1.0, transfer_syntax: str = ExplicitVRLittleEndian
) -> Series:
    """Writes N_SLICES MR slices (noisy disc on noisy background) in a lossless syntax."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    disc = (xx - DISC_CENTRE[0]) ** 2 + (yy - DISC_CENTRE[1]) ** 2 <= DISC_RADIUS_PX**2
    study, series_uid, frame = generate_uid(), generate_uid(), generate_uid()
    volume = np.empty((N_SLICES, SIZE, SIZE), np.uint16)
    files = []
    for k in range(N_SLICES):
        image = BACKGROUND + rng.normal(0.0, BACKGROUND_SD, (SIZE, SIZE))
        image[disc] = disc_mean(k, scale) + rng.normal(0.0, DISC_SD * scale, int(disc.sum()))
        volume[k] = np.clip(np.round(image), 0, 65535).astype(np.uint16)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "MR"
        ds.PatientName = SECRET_TEXTS[0]
        ds.SeriesDescription = SECRET_TEXTS[1]
        ds.AccessionNumber = SECRET_TEXTS[2]
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [0.0, 0.0, 3.0 * k]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [PIXEL_SPACING_MM, PIXEL_SPACING_MM]
        ds.SliceThickness = 3.0
        ds.Rows = ds.Columns = SIZE
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.PixelData = volume[k].tobytes()
        if transfer_syntax != ExplicitVRLittleEndian:
            ds.compress(transfer_syntax)
        path = out_dir / f"slice{k:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    # Round trip through pydicom so the reference is exactly what the server sends (and the
    # compression really was lossless).
    for k, path in enumerate(files):
        assert np.array_equal(pydicom.dcmread(path).pixel_array, volume[k])
    return Series(pixels=volume, files=files)


class ReadingServer(ThreadingHTTPServer):
    """Serves the reading page, /static/viewer/ and cookie-protected blinded DICOM."""

    daemon_threads = True

    def __init__(self, static_viewer: Path):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.static_viewer = static_viewer.resolve()
        self.dicom: dict[str, Path] = {}
        self.requests: list[tuple[str, str, bool]] = []  # (path, status, had session cookie)
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def publish(self, series: Series) -> list[str]:
        """Gives every slice an opaque token URL; returns wadouri image ids in slice order."""
        series.tokens = []
        for path in series.files:
            token = secrets.token_urlsafe(12)
            self.dicom[token] = path
            series.tokens.append(token)
        return [f"wadouri:{self.base_url}/read/i/{t}/" for t in series.tokens]

    def dicom_requests(self, tokens: list[str]) -> list[tuple[str, str, bool]]:
        with self.lock:
            return [r for r in self.requests if any(f"/read/i/{t}/" == r[0] for t in tokens)]


class _Handler(BaseHTTPRequestHandler):
    server: ReadingServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        return

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        path = urlsplit(self.path).path
        cookie = self.headers.get("Cookie") or ""
        has_session = f"{SESSION_COOKIE[0]}={SESSION_COOKIE[1]}" in cookie
        status, body, content_type = self._resolve(path, has_session)
        with self.server.lock:
            self.server.requests.append((path, str(int(status)), has_session))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _resolve(self, path: str, has_session: bool) -> tuple[HTTPStatus, bytes, str]:
        if path == "/reading/":
            return HTTPStatus.OK, READING_PAGE.encode(), "text/html; charset=utf-8"
        if path.startswith("/static/viewer/"):
            target = (self.server.static_viewer / path.removeprefix("/static/viewer/")).resolve()
            if target.is_file() and self.server.static_viewer in target.parents:
                kind = CONTENT_TYPES.get(target.suffix, "application/octet-stream")
                return HTTPStatus.OK, target.read_bytes(), kind
            return HTTPStatus.NOT_FOUND, b"not found", "text/plain"
        parts = path.strip("/").split("/")
        if len(parts) == 3 and parts[:2] == ["read", "i"] and path.endswith("/"):
            if not has_session:
                return HTTPStatus.FORBIDDEN, b"no session", "text/plain"
            file = self.server.dicom.get(parts[2])
            if file is None:
                return HTTPStatus.NOT_FOUND, b"not found", "text/plain"
            return HTTPStatus.OK, file.read_bytes(), "application/dicom"
        return HTTPStatus.NOT_FOUND, b"not found", "text/plain"


def start_server(static_viewer: Path) -> tuple[ReadingServer, threading.Thread]:
    server = ReadingServer(static_viewer)
    thread = threading.Thread(target=server.serve_forever, name="viewer-test-http", daemon=True)
    thread.start()
    return server, thread

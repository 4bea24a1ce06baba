"""The search service: a gallery index over HTTP, the model loaded once and kept warm.

``create_app`` builds a FastAPI app over one index folder: a JSON API under ``/api`` and the
page (``static/``) at ``/``. What it guards, and why:

* Requests never name files: pictures are addressed by entry id, and their files come from the
  index's own metadata. An upload is decoded in memory exactly as ``tools/query.py`` decodes a
  query file (a GIF, which only TensorFlow reads, through a private temporary file).
* Uploads are bounded in bytes (read no further than the limit) and in pixels (read from the
  header before decoding, :mod:`reid.data.image_size`): 413 either way; bytes that are no image
  format are 415, an image that does not decode 400, bad parameters 422.
* A token, when set, must come with every API call (``Authorization: Bearer``): the tool sets
  one whenever it binds beyond the loopback interface.
* The index is only read. Each request first reads the folder's ``CURRENT`` pointer (one small
  file); when a writer (``build_index --append``, ``index_video --append``) published a new
  version, the index is reloaded before answering, so a complete version is always served
  (versions are never changed once published, :mod:`reid.index.versioned_folder`).
* Requests embed and search one at a time: an embedder runner and the index's in-memory
  metadata are not for concurrent use, and one search takes milliseconds. Uploads are decoded
  outside that lock, side by side.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pathlib
import secrets
import tempfile
import threading
from typing import Annotated, Any

import cv2
import numpy as np
from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from reid.calibration import MatchThreshold, resolve_threshold
from reid.data.decode import (BadImageError, decode_rgb_bytes, normalize_pixels,
                              resize_bilinear)
from reid.data.image_size import read_image_size
from reid.index import media
from reid.index import versioned_folder as vf
from reid.index.appearances import (AppearanceQuery, AppearanceResult, appearances_json,
                                    search_appearances)
from reid.index.errors import GalleryError
from reid.index.footage import FootageEntry
from reid.index.gallery import GalleryIndex, ModelInfo
from reid.index.query import QueryResult, load_query_image, open_gallery, results_json

STATIC = pathlib.Path(__file__).with_name("static")
#: Upload limits: a query is one person's picture; a phone photo is 3-12 MB and 12-50 MP.
DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
MAX_RESULTS = 100
#: Bytes a multipart form adds around the image (boundaries, headers, the other fields).
FORM_OVERHEAD = 64 * 1024
THUMB_HEIGHT = 256
#: Leading bytes of the image formats a query may be in.
_MAGIC = {b"\xff\xd8\xff": ".jpg", b"\x89PNG\r\n\x1a\n": ".png", b"GIF8": ".gif", b"BM": ".bmp"}


@dataclasses.dataclass(frozen=True)
class ServeLimits:
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS


class LiveIndex:
    """The index a server answers from, reloaded when its folder publishes a new version; the
    model stays loaded. Callers hold :attr:`lock` around :meth:`current` and what they do
    with the result."""

    def __init__(self, index_dir: str | os.PathLike, runtime: str = "auto") -> None:
        self.index_dir = pathlib.Path(index_dir)
        self.lock = threading.Lock()
        gallery, self.embedder, self.model_dir = open_gallery(self.index_dir, runtime=runtime)
        self._gallery = gallery
        self.version = vf.live_version(self.index_dir)
        self.info = ModelInfo.from_embedder(self.embedder, self.model_dir)
        self.reloads = 0

    def current(self) -> GalleryIndex:
        """The live version's index, read again if a writer published a newer one. A version
        that cannot be served (damaged, another model's) is a 503 naming why, and the server
        keeps trying on later requests."""
        version = vf.live_version(self.index_dir)
        if version != self.version:
            try:
                self.reload()
            except GalleryError as exc:
                raise _error(503, f"the index changed and cannot be served: {exc}") from None
        return self._gallery

    def reload(self) -> None:
        gallery = GalleryIndex.load(self.index_dir)
        gallery.check_model(self.info, where=str(self.index_dir))
        self._gallery, self.version = gallery, vf.live_version(self.index_dir)
        self.reloads += 1


def _error(status: int, detail: str) -> HTTPException:
    return HTTPException(status_code=status, detail=detail)


def _threshold(text: str, live: LiveIndex) -> MatchThreshold | None:
    """auto: the calibrated threshold when the model has one, else none (a page need not know
    whether the model was calibrated); none; or a cosine score."""
    requested = None if text.strip().lower() in ("", "auto") else text
    try:
        return resolve_threshold(requested, live.embedder.spec, str(live.model_dir))
    except ValueError as exc:
        raise _error(422, str(exc).replace("--threshold", "threshold")) from None


def _read_upload(upload: UploadFile, limits: ServeLimits) -> tuple[bytes, str]:
    """(the bytes, their format's suffix), or the status that refuses them."""
    data = upload.file.read(limits.max_upload_bytes + 1)
    if len(data) > limits.max_upload_bytes:
        raise _error(413, f"image: larger than the limit of {limits.max_upload_bytes} bytes")
    suffix = next((s for magic, s in _MAGIC.items() if data.startswith(magic)), None)
    if suffix is None:
        raise _error(415, "image: not a JPEG, PNG, GIF or BMP file")
    return data, suffix


def _decode(data: bytes, suffix: str, live: LiveIndex, limits: ServeLimits) -> np.ndarray:
    """The query as the model sees it, decoded and resized as tools/query.py does a file."""
    height, width = live.embedder.input_size
    size = read_image_size(io.BytesIO(data))
    if size is not None and size[0] * size[1] > limits.max_pixels:
        raise _error(413, f"image: {size[0]}x{size[1]} pixels, more than the limit of "
                          f"{limits.max_pixels}")
    try:
        if suffix != ".gif":  # in memory, as load_query_image decodes a file
            return normalize_pixels(resize_bilinear(decode_rgb_bytes(data, "image"), height,
                                                    width)).astype(np.float32)
        # Only TensorFlow's decoder reads GIF, and it reads files.
        with tempfile.TemporaryDirectory(prefix="reid-serve-") as folder:
            path = os.path.join(folder, "query.gif")
            with open(path, "wb") as f:
                f.write(data)
            return load_query_image(path, height, width)
    except (BadImageError, ValueError) as exc:
        raise _error(400, f"image: cannot be decoded ({str(exc).split(': ')[-1]})") from None


def _entry_vector(gallery: GalleryIndex, item_id: int) -> np.ndarray:
    try:
        return gallery.vectors_of([item_id])[0]
    except ValueError:
        raise _error(404, f"item {item_id}: not in the index") from None


def search(live: LiveIndex, gallery: GalleryIndex, vector: np.ndarray, label: str, k: int,
           threshold: MatchThreshold | None) -> dict[str, Any]:
    """The answer tools/query.py --json gives for one query, with ``kind``."""
    if gallery.footage_count:
        found = search_appearances(gallery, vector, k, threshold)
        answer = appearances_json([AppearanceResult(AppearanceQuery(label), found, 0.0,
                                                    threshold)], live.index_dir)[0]
        for item, appearance in zip(answer["appearances"], found):
            item["has_frame"] = appearance.frame_image is not None
            item.pop("thumb", None)  # file paths of the server: the page asks by id
            item.pop("frame_image", None)
        answer.pop("thumb", None)
        return {"kind": "footage", **answer}
    hits = gallery.search(vector[None], k)[0]
    answer = results_json([QueryResult(label, None, None, hits, 0.0, threshold)])[0]
    return {"kind": "crops", **answer}


def _jpeg(image_bgr: np.ndarray) -> Response:
    ok, data = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise _error(500, "cannot encode the picture")
    return Response(data.tobytes(), media_type="image/jpeg",
                    headers={"Cache-Control": "max-age=3600"})


def _shrink(image: np.ndarray, height: int = THUMB_HEIGHT) -> np.ndarray:
    if image.shape[0] <= height:
        return image
    width = max(1, round(image.shape[1] * height / image.shape[0]))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def create_app(index_dir: str | os.PathLike, runtime: str = "auto", token: str | None = None,
               limits: ServeLimits | None = None) -> FastAPI:
    """The service over the index at ``index_dir`` (see the module docstring)."""
    limits = limits or ServeLimits()
    live = LiveIndex(index_dir, runtime)
    app = FastAPI(title="reid search", docs_url="/api/docs", openapi_url="/api/openapi.json",
                  redoc_url=None)
    app.state.live = live

    def authorised(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(
                value.strip().encode("utf-8", "replace"), token.encode("utf-8")):
            raise _error(401, "this server needs its token: Authorization: Bearer <token>")

    api = [Depends(authorised)]

    @app.middleware("http")
    async def bounded_body(request: Request, call_next: Any) -> Response:
        # Refuse an upload that says it is too big before its body is received; one that
        # lies about its length is cut at the limit when read (_read_upload).
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limits.max_upload_bytes + FORM_OVERHEAD:
            return JSONResponse({"detail": f"request: larger than the limit of "
                                           f"{limits.max_upload_bytes} bytes"}, status_code=413)
        return await call_next(request)

    @app.get("/api/health", dependencies=api)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/stats", dependencies=api)
    def stats() -> dict[str, Any]:
        with live.lock:
            gallery = live.current()
            threshold = resolve_threshold(None, live.embedder.spec, str(live.model_dir))
            videos = gallery.footage_videos()
            return {
                "count": gallery.count, "kind": "footage" if gallery.footage_count else "crops",
                "cameras": sorted({v.camera for v in videos}),
                "model": gallery.model.describe(), "runtime": live.embedder.runtime,
                "version": live.version, "reloads": live.reloads,
                "threshold": None if threshold is None else {"value": threshold.value,
                                                             "origin": threshold.origin},
                "videos": [{"video": v.video, "camera": v.camera, "start": 0.0,
                            "end": v.frames / v.fps if v.fps else 0.0,
                            "started_at": v.start_time, "width": v.width,
                            "height": v.height} for v in videos],
            }

    @app.post("/api/search", dependencies=api)
    def search_endpoint(image: Annotated[UploadFile | None, File()] = None,
                        item_id: Annotated[int | None, Form()] = None,
                        k: Annotated[int, Form(ge=1, le=MAX_RESULTS)] = 10,
                        threshold: Annotated[str, Form()] = "auto") -> dict[str, Any]:
        """Search with an uploaded image or an indexed entry. ``threshold``: auto (the model's
        calibrated threshold when it has one, else ranks only), none, or a cosine score."""
        if (image is None) == (item_id is None):
            raise _error(422, "give either an image or an item_id")
        chosen = _threshold(threshold, live)
        # Decoding needs no lock: requests decode side by side, and queue only to embed and
        # search, a few milliseconds each.
        pixels = None if image is None else _decode(*_read_upload(image, limits), live, limits)
        with live.lock:
            gallery = live.current()
            if pixels is not None:
                vector = live.embedder.embed(pixels[None])[0]
                label = image.filename or "upload"
            else:
                vector = _entry_vector(gallery, item_id)
                label = f"item {item_id}"
            return search(live, gallery, vector, label, k, chosen)

    def _footage_entry(gallery: GalleryIndex, item_id: int) -> FootageEntry | None:
        return gallery.footage_entries([item_id]).get(item_id)

    @app.get("/api/items/{item_id}/thumbnail", dependencies=api)
    def thumbnail(item_id: int) -> Response:
        with live.lock:
            gallery = live.current()
            entry = _footage_entry(gallery, item_id)
            if entry is not None:
                picture = media.read_rgb(live.index_dir, entry.thumb)
                picture = None if picture is None else cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)
            else:
                try:
                    (found,) = gallery.entries([item_id])
                except ValueError:
                    raise _error(404, f"item {item_id}: not in the index") from None
                # The file the index recorded for this id; the request names no path.
                picture = cv2.imread(found.path, cv2.IMREAD_COLOR)
        if picture is None:
            raise _error(404, f"item {item_id}: its picture is gone")
        return _jpeg(_shrink(picture))

    @app.get("/api/items/{item_id}/frame", dependencies=api)
    def frame(item_id: int) -> Response:
        with live.lock:
            gallery = live.current()
            entry = _footage_entry(gallery, item_id)
            if entry is None:
                raise _error(404, f"item {item_id}: not an entry from footage")
            if entry.frame_image is None:  # a crop: show its track's frame
                face = [e for e in gallery.track_entries(entry.camera, entry.track)
                        if e.kind == "track" and e.frame_image is not None]
                if not face:
                    raise _error(404, f"item {item_id}: no frame was stored for its track")
                entry = face[0]
            track = gallery.footage_tracks([(entry.camera, entry.track)]).get(
                (entry.camera, entry.track))
            video = gallery.footage_video(track.video) if track is not None else None
            picture = media.read_rgb(live.index_dir, entry.frame_image)
        if picture is None:
            raise _error(404, f"item {item_id}: its frame is gone")
        picture = cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)
        if video is not None and video.width:
            scale = picture.shape[1] / video.width
            x1, y1, x2, y2 = (int(round(v * scale)) for v in entry.box)
            cv2.rectangle(picture, (x1, y1), (x2, y2), (60, 180, 60), 2)
        return _jpeg(picture)

    @app.post("/api/reload", dependencies=api)
    def reload() -> dict[str, Any]:
        with live.lock:
            try:
                live.reload()
            except GalleryError as exc:
                raise _error(503, f"the index cannot be served: {exc}") from None
            return {"version": live.version, "count": live.current().count}

    @app.exception_handler(HTTPException)
    def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    if STATIC.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app

"""The search service: a gallery index over HTTP, the model loaded once and kept warm.

``create_app`` builds a FastAPI app over one index folder: a JSON API under ``/api`` and the
page (``static/``) at ``/``. What it guards, and why:

* Every request first passes :class:`reid.serve.guard.RequestGuard`, which checks the
  ``Host``, the page a call comes from and the token before any of the body is read, then
  counts and times the body (413, 408).
* Requests never name files: pictures are addressed by entry id, and their files come from the
  index's own metadata. Answers name no file of the server either: entries by id and file
  name, videos by the shortest tail of their path that tells them apart, the model by its
  folder's last two names.
* Uploads are bounded in bytes and in pixels (read from the header before decoding,
  :mod:`reid.data.image_size`): 413 either way; bytes that are no image format are 415, an
  image that does not decode 400, bad parameters 422. Decoding shares one memory budget
  (:class:`DecodeBudget`): uploads decode side by side while their pixels fit in it.
* The index is only read. Each request first reads the folder's ``CURRENT`` pointer and the
  identity of the version folder it names (:func:`reid.index.versioned_folder.live_identity`):
  when a writer published a new version, or the index was deleted and built again under the
  same version name, the index is reloaded before answering, so a complete version is always
  served (versions are never changed once published).
* Requests embed and search one at a time: an embedder runner and the index's in-memory
  metadata are not for concurrent use, and one search takes milliseconds.
* Searches can be logged (:class:`reid.serve.audit.AuditLog`): the tool requires it beyond the loopback.
* A search is decided at the gallery's size when it is answered, not at start-up: the index
  may have grown (a writer's ``--append``) since (:func:`reid.index.decision.match_threshold`).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import io
import os
import pathlib
import re
import tempfile
import threading
from collections.abc import Iterable, Iterator
from typing import Annotated, Any

import cv2
import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Path, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from reid.calibration import DEFAULT_FPIR, CalibrationError, MatchThreshold, check_fpir
from reid.data.decode import BadImageError, decode_rgb_bytes
from reid.data.image_size import read_image_size
from reid.index import media
from reid.index import versioned_folder as vf
from reid.index.appearances import (AppearanceQuery, AppearanceResult, appearances_json,
                                    search_appearances)
from reid.index.decision import match_threshold
from reid.index.errors import GalleryError
from reid.index.footage import FootageEntry
from reid.index.gallery import GalleryIndex
from reid.index.open import open_model
from reid.index.query import QueryResult, load_query_image, results_json
from reid.serve.audit import AuditLog
from reid.serve.guard import FORM_OVERHEAD, RequestGuard, allowed_hosts

STATIC = pathlib.Path(__file__).with_name("static")
#: Upload limits: a query is one person's picture; a phone photo is 3-12 MB and 12 MP (its
#: 48-50 MP modes aside), a camera's 24 MP; a person crop is rarely above 2 MP.
DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_PIXELS = 24_000_000
#: Memory that uploads being decoded may take together. One query decodes to the model's input
#: size in about :data:`DECODE_BYTES_PER_PIXEL` bytes a pixel at its peak (the 8-bit image, its
#: float32 copy, the resize), so 1 GiB decodes one 24 MP photo, or many small crops, at once.
DEFAULT_DECODE_MEMORY_BYTES = 1024 * 1024 * 1024
#: Measured peak of decoding a PNG to 256x128 (reid.data.decode): 28-31 bytes a pixel.
DECODE_BYTES_PER_PIXEL = 32
#: Seconds a request's whole body may take to arrive: 10 MiB in 60 s is 1.4 Mbit/s.
DEFAULT_UPLOAD_SECONDS = 60.0
MAX_RESULTS = 100
#: Entry ids are int64 in the index: a larger number is refused as a bad parameter.
MAX_ITEM_ID = 2 ** 63 - 1
THUMB_HEIGHT = 256
#: Leading bytes of the image formats a query may be in.
_MAGIC = {b"\xff\xd8\xff": ".jpg", b"\x89PNG\r\n\x1a\n": ".png", b"GIF8": ".gif", b"BM": ".bmp"}
#: The page's policy: its own scripts and styles only, pictures from the API (blob: when
#: fetched with the token), never framed by another site (the token form).
_PAGE_POLICY = ("default-src 'self'; img-src 'self' blob: data:; frame-ancestors 'none'; "
                "base-uri 'none'; form-action 'none'")
#: An absolute path inside a message: replaced by its last name (see :func:`public_text`).
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])/[^\s'\"(),;:]+")


@dataclasses.dataclass(frozen=True)
class ServeLimits:
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    decode_memory_bytes: int = DEFAULT_DECODE_MEMORY_BYTES
    upload_seconds: float = DEFAULT_UPLOAD_SECONDS

    @property
    def body_bytes(self) -> int:
        """The most a request's body may hold: the image and its form."""
        return self.max_upload_bytes + FORM_OVERHEAD


class DecodeBudget:
    """Memory for decoding uploads, shared by the requests: a decode reserves its estimate and
    waits while the others' reservations leave no room (four 36 MP uploads at once took 3.3 GB
    without it). One that needs more than the whole budget runs alone rather than never."""

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        self.in_use = 0
        self.waiting = 0
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def reserve(self, amount: int) -> Iterator[None]:
        with self._changed:
            self.waiting += 1
            try:
                while self.in_use and self.in_use + amount > self.capacity:
                    self._changed.wait()
            finally:
                self.waiting -= 1
            self.in_use += amount
        try:
            yield
        finally:
            with self._changed:
                self.in_use -= amount
                self._changed.notify_all()


def _tail(path: str, parts: int = 1) -> str:
    names = [p for p in str(path).replace("\\", "/").split("/") if p]
    return "/".join(names[-parts:]) if names else str(path)


def public_text(text: str, roots: dict[str, str]) -> str:
    """``text`` with the server's paths taken out: each of ``roots`` (a folder -> the name it
    goes by) replaced by its name, any other absolute path by its last name."""
    for root, name in roots.items():
        text = text.replace(root, name)
    return _ABSOLUTE_PATH.sub(lambda m: _tail(m.group()), text)


def public_names(paths: Iterable[str]) -> dict[str, str]:
    """Each path -> the shortest tail of its names that no other path ends with (a video's
    file name, with as many folders as it takes to tell it from another of that name)."""
    split = {p: [n for n in str(p).replace("\\", "/").split("/") if n] for p in set(paths)}
    names: dict[str, str] = {}
    depth = 1
    while len(names) < len(split):
        tails = {p: "/".join(parts[-depth:]) for p, parts in split.items()}
        counts = collections.Counter(tails.values())
        for p, tail in tails.items():
            if p not in names and (counts[tail] == 1 or depth >= len(split[p])):
                names[p] = tail
        depth += 1
    return names


class LiveIndex:
    """The index a server answers from, reloaded when its folder publishes a new version or is
    replaced; the model stays loaded. Callers hold :attr:`lock` around :meth:`current` and what
    they do with the result."""

    def __init__(self, index_dir: str | os.PathLike, runtime: str = "auto") -> None:
        self.index_dir = pathlib.Path(index_dir)
        self.lock = threading.Lock()
        identity = vf.live_identity(self.index_dir)
        gallery = GalleryIndex.load(self.index_dir)
        opened = open_model(gallery, runtime=runtime, where=str(self.index_dir))
        self.embedder, self.model_dir, self.info = opened.embedder, opened.model_dir, opened.info
        self.model_name = _tail(os.path.abspath(self.model_dir), 2)
        index_name = self.index_dir.resolve().name
        self.roots = {os.path.realpath(self.index_dir): index_name,
                      os.path.abspath(self.index_dir): index_name,
                      os.path.realpath(self.model_dir): self.model_name,
                      os.path.abspath(self.model_dir): self.model_name}
        self.reloads = 0
        self._failed: tuple[Any, str] | None = None
        self._use(gallery, identity)

    def _use(self, gallery: GalleryIndex, identity: Any) -> None:
        self._gallery, self._identity = gallery, identity
        self.version = None if identity is None else identity[0]
        self.video_names = public_names(v.video for v in gallery.footage_videos())
        self._failed = None

    def current(self) -> GalleryIndex:
        """The live version's index, read again if a writer published a newer one or the
        folder was replaced. A version that cannot be served (damaged, another model's) is a
        503 naming why, on every route, until the folder changes again (or a reload)."""
        identity = vf.live_identity(self.index_dir)
        if identity != self._identity:
            if self._failed is not None and self._failed[0] == identity:
                raise _error(503, self._failed[1])
            try:
                self.reload(identity)
            except GalleryError as exc:
                message = f"the index changed and cannot be served: {exc}"
                self._failed = (identity, message)
                raise _error(503, message) from None
        return self._gallery

    def reload(self, identity: Any = None) -> None:
        # The identity is read before the files: a version published while they are read is
        # then loaded again on the next request, never taken for the one already loaded.
        identity = vf.live_identity(self.index_dir) if identity is None else identity
        gallery = GalleryIndex.load(self.index_dir)
        gallery.check_model(self.info, where=str(self.index_dir))
        self._use(gallery, identity)
        self.reloads += 1


def _error(status: int, detail: str) -> HTTPException:
    return HTTPException(status_code=status, detail=detail)


def _fpir(value: float | None) -> float | None:
    """The false-positive identification rate asked for (None: not asked, the library's
    default), or the 422 that refuses it."""
    try:
        return None if value is None else check_fpir(value)
    except CalibrationError as exc:
        raise _error(422, str(exc)) from None


def _threshold(text: str, fpir: float | None, live: LiveIndex, gallery: GalleryIndex
               ) -> MatchThreshold | None:
    """The threshold a query of ``gallery`` (at its size now) is decided with. auto (or
    nothing): the gallery-level threshold at ``fpir`` when the model has a rule, else the
    per-pair one when it has that, else none (a page need not know whether or how the
    model was calibrated); pair; none; or a cosine score (the page sends its rate with
    every choice: only auto uses it)."""
    requested = None if text.strip().lower() in ("", "auto") else text
    try:
        return match_threshold(gallery, live.embedder.spec, live.model_name, requested,
                               fpir if requested is None else None)
    except ValueError as exc:  # CalibrationError is one
        raise _error(422, str(exc)) from None


def _read_upload(upload: UploadFile, limits: ServeLimits) -> bytes:
    """The upload's bytes, or the 413 that refuses them."""
    data = upload.file.read(limits.max_upload_bytes + 1)
    if len(data) > limits.max_upload_bytes:
        raise _error(413, f"image: larger than the limit of {limits.max_upload_bytes} bytes")
    return data


def _image_format(data: bytes) -> str:
    """The suffix of the image format ``data`` is in, or the 415 that refuses it."""
    suffix = next((s for magic, s in _MAGIC.items() if data.startswith(magic)), None)
    if suffix is None:
        raise _error(415, "image: not a JPEG, PNG, GIF or BMP file")
    return suffix


def _decode(data: bytes, suffix: str, live: LiveIndex, limits: ServeLimits,
            budget: DecodeBudget) -> np.ndarray:
    """The query's pixels at the model's input size, decoded and resized as tools/query.py
    does a file, within the decode budget (the embedder normalises them)."""
    height, width = live.embedder.input_size
    size = read_image_size(io.BytesIO(data))
    if size is not None and size[0] * size[1] > limits.max_pixels:
        raise _error(413, f"image: {size[0]}x{size[1]} pixels, more than the limit of "
                          f"{limits.max_pixels}")
    pixels = limits.max_pixels if size is None else size[0] * size[1]
    try:
        with budget.reserve(pixels * DECODE_BYTES_PER_PIXEL):
            if suffix != ".gif":  # in memory, as load_query_image decodes a file
                return live.embedder.resize(decode_rgb_bytes(data, "image"))
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
    """The answer tools/query.py --json gives for one query, with ``kind``, and names where
    it gives the server's paths: ``name`` (the file's) for ``path``, a video's name."""
    def name(path: str | None) -> str | None:
        return None if path is None else _tail(path)

    if gallery.footage_count:
        found = search_appearances(gallery, vector, k, threshold)
        answer = appearances_json([AppearanceResult(AppearanceQuery(label), found, 0.0,
                                                    threshold)], live.index_dir)[0]
        for item, appearance in zip(answer["appearances"], found):
            item["has_frame"] = appearance.frame_image is not None
            item.pop("thumb", None)  # file paths of the server: the page asks by id
            item.pop("frame_image", None)
            item["name"] = name(item.pop("path", None))
            if item.get("video") is not None:
                item["video"] = live.video_names.get(item["video"], name(item["video"]))
        answer.pop("thumb", None)
        answer = {"kind": "footage", **answer}
    else:
        hits = gallery.search(vector[None], k)[0]
        answer = {"kind": "crops",
                  **results_json([QueryResult(label, None, None, hits, 0.0, threshold)])[0]}
        for hit in answer["hits"]:
            hit["name"] = name(hit.pop("path", None))
    if answer.get("threshold_origin"):
        answer["threshold_origin"] = public_text(answer["threshold_origin"], live.roots)
    return answer


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


ItemId = Annotated[int, Path(ge=0, le=MAX_ITEM_ID)]


def create_app(index_dir: str | os.PathLike, runtime: str = "auto", token: str | None = None,
               limits: ServeLimits | None = None, hosts: frozenset[str] | None = None,
               audit_log: str | os.PathLike | None = None) -> FastAPI:
    """The service over the index at ``index_dir`` (see the module docstring). ``hosts``: the
    names the ``Host`` header may give besides an IP address (:func:`allowed_hosts`; default:
    a loopback server's). ``audit_log``: a file every search is appended to."""
    limits = limits or ServeLimits()
    live = LiveIndex(index_dir, runtime)
    budget = DecodeBudget(limits.decode_memory_bytes)
    audit = None if audit_log is None else AuditLog(audit_log)
    app = FastAPI(title="reid search", docs_url="/api/docs", openapi_url="/api/openapi.json",
                  redoc_url=None)
    app.state.live, app.state.decode_budget, app.state.audit = live, budget, audit
    app.add_middleware(RequestGuard, token=token,
                       hosts=allowed_hosts("127.0.0.1") if hosts is None else hosts,
                       body_bytes=limits.body_bytes, body_seconds=limits.upload_seconds)

    def threshold_json(threshold: MatchThreshold | None) -> dict[str, Any] | None:
        return None if threshold is None else {
            "value": threshold.value, "origin": public_text(threshold.origin, live.roots),
            "fpir": threshold.fpir, "gallery_size": threshold.gallery_size}

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        """"ok" when the index can be served, else the 503 every other route gives."""
        with live.lock:
            gallery = live.current()
            return {"status": "ok", "version": live.version, "count": gallery.count}

    @app.get("/api/stats")
    def stats(threshold: Annotated[str, Query(max_length=64)] = "auto",
              fpir: Annotated[float | None, Query()] = None) -> dict[str, Any]:
        """The index's figures, and the threshold a search with ``threshold`` and ``fpir``
        would be decided with now (null, and ``threshold_error`` saying why, when the
        model's calibration cannot give it)."""
        rate = _fpir(fpir)
        with live.lock:
            gallery = live.current()
            try:
                chosen, problem = _threshold(threshold, rate, live, gallery), None
            except HTTPException as exc:
                chosen, problem = None, public_text(str(exc.detail), live.roots)
            try:  # what the page's "per pair" choice would give
                pair = _threshold("pair", rate, live, gallery)
            except HTTPException:
                pair = None
            videos = gallery.footage_videos()
            return {
                "count": gallery.count, "kind": "footage" if gallery.footage_count else "crops",
                "cameras": sorted({v.camera for v in videos}),
                "model": dataclasses.replace(gallery.model,
                                             model_dir=live.model_name).describe(),
                "runtime": live.embedder.runtime,
                "version": live.version, "reloads": live.reloads,
                "threshold": threshold_json(chosen), "threshold_error": problem,
                "fpir": DEFAULT_FPIR if rate is None else rate, "default_fpir": DEFAULT_FPIR,
                "pair_threshold": threshold_json(pair),
                "videos": [{"video": live.video_names.get(v.video, _tail(v.video)),
                            "camera": v.camera, "start": 0.0,
                            "end": v.frames / v.fps if v.fps else 0.0,
                            "started_at": v.start_time, "width": v.width,
                            "height": v.height} for v in videos],
            }

    @app.post("/api/search")
    def search_endpoint(request: Request,
                        image: Annotated[UploadFile | None, File()] = None,
                        item_id: Annotated[int | None, Form(ge=0, le=MAX_ITEM_ID)] = None,
                        k: Annotated[int, Form(ge=1, le=MAX_RESULTS)] = 10,
                        threshold: Annotated[str, Form(max_length=64)] = "auto",
                        fpir: Annotated[float | None, Form()] = None) -> dict[str, Any]:
        """Search with an uploaded image or an indexed entry. ``threshold``: auto (the
        gallery-level threshold at ``fpir``, the share of absent people reported present,
        for the gallery's size now, when the model has a rule; else its per-pair threshold
        when it has one; else ranks only), pair (the per-pair threshold), none, or a cosine
        score. ``fpir``: from 0.01 to 0.2, default 0.1."""
        record: dict[str, Any] = {"client": request.client.host if request.client else None,
                                  "image_sha256": None, "item_id": item_id, "k": k}
        try:
            answer = _search(image, item_id, k, threshold, fpir, record)
        except HTTPException as exc:
            _audit({**record, "status": exc.status_code, "results": 0, "match": None})
            raise
        items = answer["appearances"] if answer["kind"] == "footage" else answer["hits"]
        _audit({**record, "status": 200, "results": len(items),
                "match": answer["in_gallery"]})
        return answer

    def _search(image: UploadFile | None, item_id: int | None, k: int, threshold: str,
                fpir: float | None, record: dict[str, Any]) -> dict[str, Any]:
        if (image is None) == (item_id is None):
            raise _error(422, "give either an image or an item_id")
        rate = _fpir(fpir)
        with live.lock:  # a threshold the model cannot give is refused before the upload
            _threshold(threshold, rate, live, live.current())
        # Decoding needs no lock: requests decode side by side, within the budget, and queue
        # only to embed and search, a few milliseconds each.
        pixels = None
        if image is not None:
            data = _read_upload(image, limits)
            if audit is not None:
                record["image_sha256"] = hashlib.sha256(data).hexdigest()
            pixels = _decode(data, _image_format(data), live, limits, budget)
        with live.lock:
            gallery = live.current()
            if pixels is not None:
                vector = live.embedder.embed(pixels[None])[0]
                label = image.filename or "upload"
            else:
                vector = _entry_vector(gallery, item_id)
                label = f"item {item_id}"
            # Decided at the gallery's size now: it may have grown since the server started.
            return search(live, gallery, vector, label, k,
                          _threshold(threshold, rate, live, gallery))

    def _audit(record: dict[str, Any]) -> None:
        if audit is None:
            return
        try:
            audit.write(record)
        except OSError as exc:  # a search that cannot be logged is not answered
            raise _error(503, f"the audit log cannot be written ({exc.strerror or exc})"
                         ) from None

    def _footage_entry(gallery: GalleryIndex, item_id: int) -> FootageEntry | None:
        return gallery.footage_entries([item_id]).get(item_id)

    @app.get("/api/items/{item_id}/thumbnail")
    def thumbnail(item_id: ItemId) -> Response:
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

    @app.get("/api/items/{item_id}/frame")
    def frame(item_id: ItemId) -> Response:
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

    @app.post("/api/reload")
    def reload() -> dict[str, Any]:
        with live.lock:
            try:
                live.reload()
            except GalleryError as exc:
                raise _error(503, f"the index cannot be served: {exc}") from None
            return {"version": live.version, "count": live.current().count}

    @app.exception_handler(HTTPException)
    def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail
        if isinstance(detail, str):
            detail = public_text(detail, live.roots)
        return JSONResponse({"detail": detail}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html",
                            headers={"Content-Security-Policy": _PAGE_POLICY,
                                     "Referrer-Policy": "no-referrer"})

    if STATIC.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app

"""The one folder protocol of the synthetic generators (the crop dataset and the footage).

A generator writes its output folder whole or not at all, and never harms what it did not write:

* it draws into a staging folder beside the output and renames it into place
  (:func:`reid.utils.io.staged_dir`), so an interrupted run leaves the previous folder as it was;
* the manifest (a JSON file naming the generator, its format and its parameters) is written
  last: its presence is what marks the folder complete;
* a folder that is complete with the same parameters is left alone (the run is skipped);
* an empty folder, or one holding only what the generator wrote (the manifest says which
  files), may be replaced; anything else is refused with a one-line error naming the folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
from collections.abc import Callable, Iterator, Mapping

from reid.utils.io import staged_dir

Manifest = dict[str, object]


@dataclasses.dataclass(frozen=True)
class GeneratorFolder:
    """How one generator owns its output folder (see the module's rules).

    ``generator`` is what the manifest's ``generator`` field says (a format identifier kept on
    disk, so folders written by earlier code stay recognised); ``kind`` names the output in
    messages; ``error`` is the exception class raised for a folder that must not be touched;
    ``written(manifest)`` gives the paths (relative, ``/``-separated, the manifest itself
    included) of every file a manifest says the generator wrote, empty when it cannot tell.
    """

    manifest_name: str
    generator: str
    format: int
    kind: str
    error: type[Exception]
    written: Callable[[Manifest], set[str]]

    def read_manifest(self, out_dir: str | os.PathLike) -> Manifest | None:
        """The manifest in ``out_dir``, or None when there is none to read."""
        try:
            data = json.loads((pathlib.Path(out_dir) / self.manifest_name)
                              .read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def is_complete(self, out_dir: str | os.PathLike, params: Mapping[str, object]) -> bool:
        """True if ``out_dir`` holds this generator's output for ``params``, every file present."""
        out = pathlib.Path(out_dir)
        manifest = self.read_manifest(out)
        if manifest is None or manifest.get("format") != self.format:
            return False
        if manifest.get("generator") != self.generator or manifest.get("params") != params:
            return False
        files = self.written(manifest)
        return bool(files) and all((out / f).is_file() for f in files)

    def _check_replaceable(self, out: pathlib.Path) -> bool:
        """Refuse a folder this generator did not write; True if there is one to replace."""
        if not out.exists():
            return False
        if not out.is_dir():
            raise self.error(f"{out}: exists and is not a folder")
        if not any(out.iterdir()):
            return False
        manifest = self.read_manifest(out)
        if manifest is None or manifest.get("generator") != self.generator:
            raise self.error(f"{out}: exists, is not empty and has no {self.manifest_name} of "
                             f"{self.kind}, so it was not written by this generator; refusing "
                             f"to replace it")
        ours = self.written(manifest)
        theirs = sorted(name for name in (p.relative_to(out).as_posix() for p in out.rglob("*")
                                          if not p.is_dir()) if name not in ours)
        if theirs:  # notes, images added by hand: replacing the folder would delete them
            shown = ", ".join(theirs[:3]) + (", ..." if len(theirs) > 3 else "")
            raise self.error(f"{out}: holds {len(theirs)} file(s) this generator did not write "
                             f"({shown}); move them out or choose another folder", field="out")
        return True

    @contextlib.contextmanager
    def replace(self, out_dir: str | os.PathLike) -> Iterator[Staging]:
        """Write ``out_dir`` anew: refuse it if the generator must not touch it, else yield a
        :class:`Staging` to fill and then to :meth:`~Staging.finish`; on leaving, the staging
        folder replaces ``out_dir``. On an exception (or without the finish) ``out_dir`` is
        left as it was."""
        out = pathlib.Path(out_dir)
        replaced = self._check_replaceable(out)
        with staged_dir(out, replace=True) as tmp:
            staging = Staging(self, tmp, replaced)
            yield staging
            if staging.manifest is None:
                raise RuntimeError(f"{self.generator}: the folder was staged without its "
                                   f"manifest, so it is not put in place")


@dataclasses.dataclass
class Staging:
    """An output folder being written: ``path`` is the staging folder to fill, ``replaced``
    whether an earlier folder of the generator is being replaced."""

    folder: GeneratorFolder
    path: pathlib.Path
    replaced: bool
    manifest: Manifest | None = None

    def finish(self, params: Mapping[str, object], details: Mapping[str, object]) -> None:
        """Write the manifest, the last file, whose presence marks the folder complete: the
        generator, the format, ``params`` (what :meth:`GeneratorFolder.is_complete` compares)
        and the generator's ``details``."""
        folder = self.folder
        manifest = {"generator": folder.generator, "format": folder.format, "params": dict(params),
                    **details}
        (self.path / folder.manifest_name).write_text(json.dumps(manifest, indent=2) + "\n",
                                                      encoding="utf-8")
        self.manifest = manifest

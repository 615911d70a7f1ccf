"""OUTPUT's manifest, ``_manifest.json``: which run wrote the folder and which parts it finished.

A part is committed in two renames: its Parquet file, then the manifest that lists it. A run that stops between
the two leaves a part file the manifest does not list, which the next run writes again; a listed part whose input
file kept its size and modification time is skipped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..exceptions import ConfigError

__all__ = ["MANIFEST", "Manifest"]

MANIFEST = "_manifest.json"
"""The manifest's file name in OUTPUT (a leading ``_``: Parquet readers of the folder leave it out)."""
FORMAT = 1


def _stat(path: Path) -> dict[str, int]:
    status = path.stat()
    return {"size": status.st_size, "mtime_ns": status.st_mtime_ns}


class Manifest:
    """The finished parts of one OUTPUT folder, for one run identity (router, table, threshold, columns).

    Args:
        folder (Path): OUTPUT, created when missing.
        identity (dict): what makes two runs the same; a folder written by another identity is refused.
        overwrite (bool): forget what the folder holds (its manifest and the part files it lists) and start again.

    Raises:
        ConfigError: OUTPUT is a file, a non-empty folder without a manifest, or another run's folder.
    """

    def __init__(self, folder: Path, identity: dict[str, Any], *, overwrite: bool = False) -> None:
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"OUTPUT {folder} is a file; route-batch writes a folder of Parquet parts")
        self.folder, self.identity, self.path = folder, identity, folder / MANIFEST
        folder.mkdir(parents=True, exist_ok=True)
        found = self._read()
        if found is not None and overwrite:
            for entry in found["parts"].values():
                (folder / entry["output"]).unlink(missing_ok=True)
            self.path.unlink()
            found = None
        if found is None and not overwrite and any(p.suffix == ".parquet" for p in folder.iterdir()):
            raise ConfigError(
                f"OUTPUT {folder} holds Parquet files but no {MANIFEST}: it was not written by route-batch; "
                "choose a new folder, or pass --overwrite (overwrite=True)"
            )
        if found is not None and found["identity"] != identity:
            changed = sorted(k for k in identity if found["identity"].get(k) != identity[k])
            raise ConfigError(
                f"OUTPUT {folder} holds another run's parts (it differs in {', '.join(changed)}); write to a new "
                "folder, or pass --overwrite (overwrite=True) to start again"
            )
        self.parts: dict[str, dict[str, Any]] = {} if found is None else found["parts"]

    def _read(self) -> dict[str, Any] | None:
        if not self.path.is_file():
            return None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("format") == FORMAT and isinstance(data.get("parts"), dict) and "identity" in data:
                return data  # type: ignore[no-any-return]
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            pass
        raise ConfigError(f"{self.path} is not a route-batch manifest; remove it, or pass --overwrite")

    def finished(self, name: str, source: Path) -> bool:
        """Whether part ``name`` was committed from ``source`` as it is now (same size and modification time),
        and its output file is still there."""
        entry = self.parts.get(name)
        return (
            entry is not None
            and entry.get("input") == {"path": str(source.resolve()), **_stat(source)}
            and (self.folder / entry["output"]).is_file()
        )

    def commit(self, name: str, source: Path, output: str, rows: int, bad_rows: int) -> None:
        """List part ``name`` (written to ``output``) as finished: the manifest is rewritten through a rename."""
        self.parts[name] = {
            "input": {"path": str(source.resolve()), **_stat(source)},
            "output": output,
            "rows": rows,
            "bad_rows": bad_rows,
        }
        temporary = self.path.with_name(f".{MANIFEST}.{os.getpid()}.tmp")
        data = {"format": FORMAT, "identity": self.identity, "parts": self.parts}
        temporary.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
        os.replace(temporary, self.path)

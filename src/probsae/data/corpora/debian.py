"""Reading Debian binary packages (.deb) without dpkg: the ``ar`` container, its control fields
and the files of its data archive. ``download_deb`` fetches one with ``apt-get download``."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
from pathlib import Path

from ..errors import CorpusError


def _ar_members(blob: bytes, where: str) -> dict[str, bytes]:
    """Members of an ``ar`` archive (the .deb container): name → content."""
    if not blob.startswith(b"!<arch>\n"):
        raise CorpusError(f"{where} is not a Debian package (no ar header)")
    out, pos = {}, 8
    while pos + 60 <= len(blob):
        head = blob[pos:pos + 60]
        name = head[:16].decode("ascii", "replace").strip().rstrip("/")
        try:
            size = int(head[48:58].decode("ascii").strip())
        except ValueError:
            raise CorpusError(f"{where}: corrupt ar member header at byte {pos}") from None
        pos += 60
        out[name] = blob[pos:pos + size]
        pos += size + (size % 2)
    return out


def _open_tar(members: dict[str, bytes], prefix: str, where: str) -> tarfile.TarFile:
    name = next((n for n in members if n.startswith(prefix)), None)
    if name is None:
        raise CorpusError(f"{where} has no {prefix}* member")
    if name.endswith(".zst"):
        raise CorpusError(f"{where}: {name} is zstd-compressed, which Python's tarfile cannot read")
    return tarfile.open(fileobj=io.BytesIO(members[name]), mode="r:*")


class DebPackage:
    """One .deb file: ``control`` (its fields) and ``read(path)`` / ``files(prefix)`` of its data."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        blob = self.path.read_bytes()
        self.sha256 = hashlib.sha256(blob).hexdigest()
        members = _ar_members(blob, str(self.path))
        with _open_tar(members, "control.tar", str(self.path)) as t:
            ctrl = next((m for m in t.getmembers() if m.name.lstrip("./") == "control"), None)
            if ctrl is None:
                raise CorpusError(f"{self.path}: control archive has no 'control' file")
            self.control = parse_control(t.extractfile(ctrl).read().decode("utf-8", "replace"))
        self._data: dict[str, bytes] = {}
        with _open_tar(members, "data.tar", str(self.path)) as t:
            for m in t.getmembers():
                if m.isfile():
                    self._data["/" + m.name.lstrip("./")] = t.extractfile(m).read()

    @property
    def name(self) -> str:
        return self.control.get("Package", self.path.name.split("_")[0])

    @property
    def version(self) -> str:
        return self.control.get("Version", "?")

    def files(self, prefix: str = "/") -> list[str]:
        """Paths of the regular files under ``prefix``, sorted."""
        return sorted(p for p in self._data if p.startswith(prefix))

    def read(self, path: str) -> bytes:
        try:
            return self._data[path]
        except KeyError:
            raise CorpusError(f"{self.path} has no file {path}") from None

    def copyright(self) -> str:
        """The package's /usr/share/doc/<name>/copyright (licence statement), or ''."""
        p = f"/usr/share/doc/{self.name}/copyright"
        return self._data[p].decode("utf-8", "replace") if p in self._data else ""


def parse_control(text: str) -> dict[str, str]:
    """Fields of a Debian control file (continuation lines joined)."""
    out: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if line[:1] in (" ", "\t") and key:
            out[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, val = line.partition(":")
            key = key.strip()
            out[key] = val.strip()
    return out


def download_deb(package: str, dest: Path) -> Path:
    """``apt-get download PACKAGE`` into ``dest``; returns the .deb path."""
    dest.mkdir(parents=True, exist_ok=True)
    found = sorted(dest.glob(f"{package}_*.deb"))
    if found:
        return found[-1]
    if shutil.which("apt-get") is None:
        raise CorpusError(f"cannot download Debian package {package!r}: apt-get is not available; "
                          f"put {package}_*.deb into {dest} (or pass --debs DIR)")
    proc = subprocess.run(["apt-get", "download", package], cwd=dest, capture_output=True, text=True)
    found = sorted(dest.glob(f"{package}_*.deb"))
    if proc.returncode != 0 or not found:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise CorpusError(f"apt-get download {package} failed: {msg[-1] if msg else 'no .deb written'} "
                          "(run 'apt-get update' first, or pass --debs DIR with the .deb files)")
    return found[-1]

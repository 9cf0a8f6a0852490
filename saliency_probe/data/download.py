"""Fetch a public fixation data set: ``python -m saliency_probe.data.download osie --out DIR``.

OSIE (Xu et al. 2014, MIT licence) is published in the GitHub repository NUS-VIP/predicting-human-gaze-beyond-pixels.
The command downloads the repository's zip archive, unpacks only ``data/stimuli/*.jpg``, ``data/eye/fixations.mat``
and the licence into ``DIR/osie``, verifies them, and prints the ``data.root`` to pass to ``data=osie``.

Verification. GitHub builds branch archives on request and does not promise the same bytes twice, so the pinned
checksum is of the **content**: the SHA-256 of the ``sha256sum`` listing of the data files sorted by path,
reproducible with ``cd DIR/osie && { find data/stimuli -name '*.jpg'; echo data/eye/fixations.mat; } |
LC_ALL=C sort | xargs sha256sum | sha256sum``. It was computed from the 700 stimuli and ``fixations.mat`` of
the repository (commit 4a46789). ``--sha256`` additionally pins the archive's own bytes; the archive's SHA-256 is
printed after every download so that it can be pinned.

Nothing is written to ``DIR/osie`` unless everything verifies (the files are unpacked beside it, then renamed).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from saliency_probe.io_utils import file_sha256

CHUNK = 1 << 20


@dataclass(frozen=True)
class ArchiveSource:
    """Where a data set's archive is and what its unpacked content must be.

    Attributes:
        name: the folder created under ``--out`` (and the command's argument).
        urls: archive URLs, tried in order (the next one only when a server answers "not found").
        marker: the path, relative to the data root, that locates the root inside the archive.
        data_files: glob patterns (relative to the root) of the verified data files.
        extra_files: patterns of files kept but not verified (licence, read-me).
        content_sha256: SHA-256 of the ``sha256sum`` listing of the data files sorted by path.
        archive_sha256: SHA-256 of the archive's bytes, or None (not pinned: GitHub may rebuild archives).
        n_images: how many images the data set has (reported, checked by the content digest).
    """

    name: str
    urls: tuple[str, ...]
    marker: str
    data_files: tuple[str, ...]
    extra_files: tuple[str, ...]
    content_sha256: str
    archive_sha256: str | None
    n_images: int
    citation: str


OSIE_REPOSITORY = "https://github.com/NUS-VIP/predicting-human-gaze-beyond-pixels"
SOURCES: dict[str, ArchiveSource] = {
    "osie": ArchiveSource(
        name="osie",
        urls=(f"{OSIE_REPOSITORY}/archive/refs/heads/master.zip", f"{OSIE_REPOSITORY}/archive/refs/heads/main.zip"),
        marker="data/eye/fixations.mat",
        data_files=("data/stimuli/*.jpg", "data/eye/fixations.mat"),
        extra_files=("LICENSE", "README.md"),
        content_sha256="95264dc868fac8a92bb58e6ce394b1b7c80e3c3368dc428aa06c8d7ed471b89c",
        archive_sha256=None,
        n_images=700,
        citation='Xu, Jiang, Wang, Kankanhalli, Zhao, "Predicting human gaze beyond pixels", JoV 14(1):28, 2014 '
                 "(MIT licence)",
    ),
}


class DownloadError(RuntimeError):
    """A download, checksum or unpacking failure, with a message that says what to do."""


def _matches(relative: str, patterns: Sequence[str]) -> bool:
    path = PurePosixPath(relative)
    return any(path.match(pattern) and len(path.parts) == len(PurePosixPath(pattern).parts) for pattern in patterns)


def data_files(root: Path, patterns: Sequence[str]) -> list[str]:
    """Relative POSIX paths of the files under ``root`` matching ``patterns``, sorted (C-locale order)."""
    found = []
    for pattern in patterns:
        found.extend(path.relative_to(root).as_posix() for path in root.glob(pattern) if path.is_file())
    return sorted(set(found))


def content_digest(root: str | os.PathLike[str], patterns: Sequence[str]) -> str:
    """SHA-256 of the ``sha256sum`` listing (``<hex>  <path>``) of the matching files, sorted by path."""
    root = Path(root)
    listing = "".join(f"{file_sha256(root / rel)}  {rel}\n" for rel in data_files(root, patterns))
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


def fetch(url: str, destination: Path, timeout: float = 60.0, quiet: bool = False) -> str:
    """Stream ``url`` into ``destination``; return the SHA-256 of the bytes. Raises urllib's errors."""
    request = urllib.request.Request(url, headers={"User-Agent": "saliency_probe-download"})
    digest = hashlib.sha256()
    received = 0
    with urllib.request.urlopen(request, timeout=timeout) as response, open(destination, "wb") as out:
        while chunk := response.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
            received += len(chunk)
            if not quiet and received % (16 * CHUNK) < len(chunk):
                print(f"  {received / CHUNK:.0f} MiB", file=sys.stderr, flush=True)
    return digest.hexdigest()


def download_archive(urls: Sequence[str], destination: Path, timeout: float, quiet: bool) -> tuple[str, str]:
    """Try ``urls`` in order (the next only after an HTTP "not found"); return ``(url, sha256)``."""
    failures = []
    for url in urls:
        if not quiet:
            print(f"downloading {url}", file=sys.stderr, flush=True)
        try:
            return url, fetch(url, destination, timeout, quiet)
        except urllib.error.HTTPError as error:
            failures.append(f"{url}: HTTP {error.code} {error.reason}")
            if error.code != 404:
                break
        except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as error:
            reason = getattr(error, "reason", error)
            failures.append(f"{url}: {reason}")
            break  # the network is unreachable or the server down: the other addresses would fail the same way
    raise DownloadError(
        "could not download the archive (" + "; ".join(failures) + "). Without network access, download the "
        f"archive elsewhere ({urls[0]}) and pass it with --archive FILE."
    )


def _data_root_prefix(names: Sequence[str], marker: str, archive: Path) -> str:
    candidates = [name for name in names if name == marker or name.endswith("/" + marker)]
    if not candidates:
        raise DownloadError(f"{archive}: no {marker} inside; not the expected archive (it must hold <top>/{marker})")
    return min(candidates, key=len)[: -len(marker)]


def unpack(archive: Path, destination: Path, source: ArchiveSource) -> list[str]:
    """Extract the data and extra files of ``source`` from the zip ``archive`` into ``destination``."""
    try:
        zipped = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as error:
        raise DownloadError(f"{archive}: not a readable zip archive ({error})") from error
    extracted = []
    with zipped:
        prefix = _data_root_prefix(zipped.namelist(), source.marker, archive)
        for info in zipped.infolist():
            if info.is_dir() or not info.filename.startswith(prefix):
                continue
            relative = info.filename[len(prefix) :]
            parts = PurePosixPath(relative).parts
            if not parts or ".." in parts or PurePosixPath(relative).is_absolute():
                continue
            if not _matches(relative, (*source.data_files, *source.extra_files)):
                continue
            target = destination.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zipped.open(info) as member, open(target, "wb") as out:
                shutil.copyfileobj(member, out, CHUNK)
            extracted.append(relative)
    return extracted


def prepare(
    source: ArchiveSource,
    out: str | os.PathLike[str],
    urls: Sequence[str] | None = None,
    archive: str | os.PathLike[str] | None = None,
    sha256: str | None = None,
    content_sha256: str | None = None,
    timeout: float = 60.0,
    keep_archive: bool = False,
    quiet: bool = False,
) -> Path:
    """Download (or take ``archive``), verify and unpack ``source`` into ``out/<name>``; return that root.

    ``sha256`` pins the archive's bytes (default: the source's pin, none for GitHub archives);
    ``content_sha256`` the unpacked data files (default: the source's pin; ``"none"`` skips the check).
    An existing ``out/<name>`` with the expected content is reused without downloading.
    """
    out = Path(out).expanduser().absolute()
    root = out / source.name
    expected_content = source.content_sha256 if content_sha256 is None else content_sha256.lower()
    expected_archive = (sha256 or source.archive_sha256 or "").lower() or None
    if root.exists():
        found = content_digest(root, source.data_files)
        if expected_content != "none" and found != expected_content:
            raise DownloadError(
                f"{root} exists but its content differs from the expected data (content sha256 {found}, expected "
                f"{expected_content}); delete it or choose another --out"
            )
        if not quiet:
            print(f"{root} already holds the verified data; nothing downloaded", file=sys.stderr)
        return root
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f".{source.name}-download-", dir=out))
    try:
        if archive is not None:
            archive_path, used_url = Path(archive).expanduser().absolute(), None
            if not archive_path.is_file():
                raise DownloadError(f"--archive {archive_path}: no such file")
            archive_digest = file_sha256(archive_path)
        else:
            archive_path = workdir / "archive.zip"
            used_url, archive_digest = download_archive(list(urls or source.urls), archive_path, timeout, quiet)
        if expected_archive is not None and archive_digest != expected_archive:
            raise DownloadError(
                f"checksum mismatch for {used_url or archive_path}: sha256 {archive_digest}, expected "
                f"{expected_archive}; the file is corrupt or not the pinned archive (nothing was unpacked)"
            )
        staging = workdir / source.name
        extracted = unpack(archive_path, staging, source)
        found = content_digest(staging, source.data_files)
        if expected_content != "none" and found != expected_content:
            n_files = len(data_files(staging, source.data_files))
            raise DownloadError(
                f"content checksum mismatch for {used_url or archive_path}: the {n_files} data files give sha256 "
                f"{found}, expected {expected_content}; the archive holds other data (nothing was installed)"
            )
        record = {
            "source": source.name, "url": used_url, "archive": None if used_url else str(archive_path),
            "archive_sha256": archive_digest, "content_sha256": found, "files": len(extracted),
            "citation": source.citation,
        }
        (staging / "DOWNLOAD.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        if keep_archive and archive is None:
            shutil.move(str(archive_path), str(out / f"{source.name}-archive.zip"))
        os.replace(staging, root)
        if not quiet:
            print(f"archive sha256 {archive_digest} (pin it with --sha256); content sha256 {found}", file=sys.stderr)
        return root
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> Path:
    """Command line: download, verify, unpack, print ``data.root=<folder>``."""
    parser = argparse.ArgumentParser(
        prog="python -m saliency_probe.data.download",
        description="Download and verify a public fixation data set; prints the data.root to use.",
    )
    parser.add_argument("dataset", choices=sorted(SOURCES), help="data set to fetch")
    parser.add_argument("--out", required=True, help="folder that will hold <dataset>/ (created)")
    parser.add_argument("--url", action="append", default=None, help="archive URL (repeatable; default: the source's)")
    parser.add_argument("--archive", default=None, help="use an already downloaded archive instead of the network")
    parser.add_argument("--sha256", default=None, help="expected SHA-256 of the archive's bytes")
    parser.add_argument("--content-sha256", default=None,
                        help="expected SHA-256 of the unpacked data files' listing ('none' skips the check)")
    parser.add_argument("--timeout", type=float, default=60.0, help="network timeout in seconds")
    parser.add_argument("--keep-archive", action="store_true", help="keep the downloaded archive beside the data")
    parser.add_argument("--quiet", action="store_true", help="print only the data.root line")
    args = parser.parse_args(argv)
    source = SOURCES[args.dataset]
    try:
        root = prepare(source, args.out, urls=args.url, archive=args.archive, sha256=args.sha256,
                       content_sha256=args.content_sha256, timeout=args.timeout, keep_archive=args.keep_archive,
                       quiet=args.quiet)
    except DownloadError as error:
        parser.exit(1, f"error: {error}\n")
    n_images = len(data_files(root, source.data_files[:1]))
    if not args.quiet:
        print(f"{source.name}: {n_images} images in {root} ({source.citation})", file=sys.stderr)
        print(f"use: python probe.py analyses=[benchmark] data={source.name} data.root={root}", file=sys.stderr)
    print(f"data.root={root}")
    return root


if __name__ == "__main__":
    main()

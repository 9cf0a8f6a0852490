"""``python -m saliency_probe.data.download osie``: against a local HTTP server serving a small archive laid out like
GitHub's archive of the OSIE repository; checksums, unpacking, the printed data.root, and the offline error."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import socket
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_benchmark import write_osie_folder

from saliency_probe.data.download import SOURCES, content_digest, main
from saliency_probe.data.osie import OsieDataset

REPO = Path(__file__).resolve().parents[1]
TOP = "predicting-human-gaze-beyond-pixels-master/"
FIXATIONS = {
    "1001.jpg": [np.array([[3.0, 4.0], [10.0, 12.0]]), np.array([[20.0, 9.0]])],
    "1002.jpg": [np.array([[7.0, 7.0]]), np.array([[30.0, 2.0], [1.0, 1.0]])],
}


@pytest.fixture(scope="module")
def osie_zip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A small archive in the repository's layout (plus files that must not be unpacked) and its content digest."""
    folder = tmp_path_factory.mktemp("osie_source")
    write_osie_folder(folder, FIXATIONS, 24, 32)
    expected_content = content_digest(folder, SOURCES["osie"].data_files)
    archive = folder.parent / f"{folder.name}.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zipped.write(path, TOP + path.relative_to(folder).as_posix())
        zipped.writestr(TOP + "LICENSE", "MIT License\n")
        zipped.writestr(TOP + "data/mouse_amt/1001.mat", b"not needed")
        zipped.writestr(TOP + "src/model/trainModel.m", "% code\n")
        zipped.writestr(TOP + "../evil.txt", "outside")  # a hostile member must never be written
        buffer = io.BytesIO()
        Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(buffer, format="JPEG")
        zipped.writestr(TOP + "data/stimuli/extra/1003.jpg", buffer.getvalue())  # deeper than the layout
    return archive, expected_content


@pytest.fixture
def server(osie_zip: tuple[Path, str]) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 serving the archive's folder; it stops at teardown or after 60 s by itself."""
    handler = functools.partial(QuietHandler, directory=str(osie_zip[0].parent))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    watchdog = threading.Timer(60.0, httpd.shutdown)
    watchdog.daemon = True
    watchdog.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        watchdog.cancel()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's signature
        pass


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused, as without network)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/osie.zip"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_verifies_unpacks_and_prints_the_root(tmp_path: Path, osie_zip: tuple[Path, str], server: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    archive, content = osie_zip
    out = tmp_path / "out"
    root = main(["osie", "--out", str(out), "--url", f"{server}/{archive.name}", "--sha256", sha256_of(archive),
                 "--content-sha256", content])
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1] == f"data.root={out / 'osie'}" and root == out / "osie"
    unpacked = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert unpacked == ["DOWNLOAD.json", "LICENSE", "data/eye/fixations.mat", "data/stimuli/1001.jpg",
                        "data/stimuli/1002.jpg"]
    assert sorted(p.name for p in out.iterdir()) == ["osie"]  # no partial folder or archive left behind
    assert not (tmp_path / "evil.txt").exists() and not (out / "evil.txt").exists()
    record = json.loads((root / "DOWNLOAD.json").read_text())
    assert record["archive_sha256"] == sha256_of(archive) and record["content_sha256"] == content
    data = OsieDataset(root, image_size=32)  # the real reader on the unpacked data
    assert data.stems == ["1001", "1002"]
    assert data.observers(0)[0].tolist() == [[2, 3], [9, 11]]  # 1-based (3, 4), (10, 12) -> 0-based


def test_bad_archive_checksum_fails_and_installs_nothing(tmp_path: Path, osie_zip: tuple[Path, str], server: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    archive, content = osie_zip
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["osie", "--out", str(out), "--url", f"{server}/{archive.name}", "--sha256", "0" * 64,
              "--content-sha256", content])
    assert exit_info.value.code == 1
    error = capsys.readouterr().err
    assert "checksum mismatch" in error and sha256_of(archive) in error
    assert list(out.iterdir()) == []


def test_the_pinned_osie_content_rejects_other_data(tmp_path: Path, osie_zip: tuple[Path, str], server: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    archive, _ = osie_zip
    with pytest.raises(SystemExit):
        main(["osie", "--out", str(tmp_path), "--url", f"{server}/{archive.name}"])  # default pin: the real OSIE
    error = capsys.readouterr().err
    assert "content checksum mismatch" in error and SOURCES["osie"].content_sha256 in error
    assert not (tmp_path / "osie").exists()


def test_next_url_after_not_found(tmp_path: Path, osie_zip: tuple[Path, str], server: str) -> None:
    archive, content = osie_zip
    root = main(["osie", "--out", str(tmp_path), "--url", f"{server}/missing.zip", "--url",
                 f"{server}/{archive.name}", "--content-sha256", content, "--quiet"])
    assert (root / "data" / "eye" / "fixations.mat").is_file()


def test_unreachable_network_gives_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["osie", "--out", str(tmp_path), "--url", closed_port_url(), "--timeout", "5"])
    assert exit_info.value.code == 1
    error = capsys.readouterr().err
    assert "could not download" in error and "refused" in error.lower() and "--archive" in error
    assert list(tmp_path.iterdir()) == []


def test_offline_archive_and_reuse_of_verified_data(tmp_path: Path, osie_zip: tuple[Path, str],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    archive, content = osie_zip
    root = main(["osie", "--out", str(tmp_path), "--archive", str(archive), "--content-sha256", content])
    capsys.readouterr()
    # a second call finds the verified data and does not touch the network (the URL would be refused)
    again = main(["osie", "--out", str(tmp_path), "--url", closed_port_url(), "--content-sha256", content])
    assert again == root and "nothing downloaded" in capsys.readouterr().err
    (root / "data" / "stimuli" / "1001.jpg").write_bytes(b"changed")
    with pytest.raises(SystemExit):
        main(["osie", "--out", str(tmp_path), "--archive", str(archive), "--content-sha256", content])
    assert "content differs" in capsys.readouterr().err


def test_not_a_zip_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = tmp_path / "osie.zip"
    fake.write_text("<html>rate limited</html>")
    with pytest.raises(SystemExit):
        main(["osie", "--out", str(tmp_path / "out"), "--archive", str(fake)])
    assert f"{fake}: not a readable zip archive" in capsys.readouterr().err


def test_python_dash_m_entry_point(tmp_path: Path, osie_zip: tuple[Path, str]) -> None:
    archive, content = osie_zip
    result = subprocess.run(
        [sys.executable, "-m", "saliency_probe.data.download", "osie", "--out", str(tmp_path), "--archive",
         str(archive), "--content-sha256", content, "--quiet"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"data.root={tmp_path / 'osie'}"


@pytest.mark.osie
def test_pinned_content_digest_matches_the_real_osie(osie_root: Path) -> None:
    assert content_digest(osie_root, SOURCES["osie"].data_files) == SOURCES["osie"].content_sha256

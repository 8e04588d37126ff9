"""`pkmodel data fetch` against a local HTTP server on 127.0.0.1 only: downloads, retries,
resume, names, and the bad answers (not an image, no size, odd reasons, redirects elsewhere)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from pkmodel.common.errors import PkmodelError

# A JPEG's first bytes, then noise: --kind image checks the magic bytes, not the pixels.
BODY = b"\xff\xd8\xff\xe0" + bytes(
    np.random.default_rng(0).integers(0, 256, 199_996, dtype=np.uint8)
)
SMALL = BODY[:5000]
CUT = 50_000  # the flaky route closes the connection after this many bytes


PNG = b"\x89PNG\r\n\x1a\n" + SMALL[8:]
_REDIRECTS = {
    "/img/moved.jpg": "/img/ok.jpg",  # the same host: followed
    "/img/to-https.jpg": "https://127.0.0.1:{port}/img/ok.jpg",  # the same host: followed
    "/img/to-ftp.jpg": "ftp://127.0.0.1/img/ok.jpg",
    "/img/to-file.jpg": "file:///etc/passwd",
    "/img/to-other-host.jpg": "http://localhost:{port}/img/ok.jpg",
}


class _Handler(BaseHTTPRequestHandler):
    seen: list[tuple[str, str | None]] = []
    hits: dict[str, int] = {}

    def log_message(self, *args):  # keep the test output quiet
        pass

    def _send(self, code: int, ctype: str, body: bytes, extra: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self._write_quietly(body)

    def do_GET(self):
        rng = self.headers.get("Range")
        type(self).seen.append((self.path, rng))
        hits = type(self).hits
        hits[self.path] = hits.get(self.path, 0) + 1
        if self.path in ("/img/ok.jpg", "/other/ok.jpg"):
            self._send(200, "image/jpeg", SMALL)
        elif self.path == "/img/octet.jpg":
            self._send(200, "application/octet-stream", SMALL)
        elif self.path == "/img/page.jpg":
            self._send(200, "text/html; charset=utf-8", b"<html>not an image</html>")
        elif self.path == "/img/busy.jpg" and hits[self.path] == 1:
            self._send(503, "text/plain", b"busy")
        elif self.path == "/img/busy.jpg":
            self._send(200, "image/png", SMALL)
        elif self.path in ("/img/flaky.jpg", "/img/big.jpg"):
            if rng:  # resume: serve the rest
                start = int(rng.split("=")[1].rstrip("-"))
                self._send(206, "image/jpeg", BODY[start:],
                           {"Content-Range": f"bytes {start}-{len(BODY) - 1}/{len(BODY)}"})  # fmt: skip
            elif self.path == "/img/flaky.jpg":  # announce everything, send part, hang up
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(BODY)))
                self.end_headers()
                self.wfile.write(BODY[:CUT])
                self.wfile.flush()
                self.close_connection = True
            else:
                self._send(200, "image/jpeg", BODY)
        elif self.path == "/img/norange.jpg":  # ignores Range: always the whole file
            self._send(200, "image/jpeg", BODY)
        elif self.path.startswith("/img/long"):
            self._send(200, "image/jpeg", SMALL)
        elif self.path == "/img/fake.jpg":  # an HTML page that calls itself a JPEG
            self._send(200, "image/jpeg", b"<!DOCTYPE html><html>log in first</html>")
        elif self.path == "/img/tiny.jpg":  # too short to be any image
            self._send(200, "image/jpeg", b"<b>")
        elif self.path == "/img/octet.png":
            self._send(200, "application/octet-stream", PNG)
        elif self.path == "/img/unsized.jpg":  # no Content-Length: the body ends when it closes
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()
            self._write_quietly(BODY + BODY)
            self.close_connection = True
        elif self.path == "/img/huge.jpg":  # announces more than the cap
            self._send(200, "image/jpeg", BODY)
        elif self.path == "/img/odd-reason.jpg":  # line breaks in the status line's reason
            self.send_response(404, "Not\rFound\x85at\x0ball\there")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path in _REDIRECTS:
            target = _REDIRECTS[self.path].format(port=self.server.server_address[1])
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._send(404, "text/plain", b"no such file")

    def _write_quietly(self, body: bytes) -> None:
        # the client may stop reading (a size cap, a wrong first bytes): no traceback for that
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)


@pytest.fixture
def local_server(monkeypatch):
    for name in (
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    _Handler.seen, _Handler.hits = [], {}

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 64  # no dropped connections when every worker connects at once

    server = Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once it is closed: connection refused


def test_fetch_against_a_local_server(local_server, tmp_path):
    from pkmodel.datatools.fetch import fetch_urls

    refused = f"http://127.0.0.1:{_closed_port()}/img/refused.jpg"
    (tmp_path / "list.txt").write_text(
        "# images\n"
        f"{local_server}/img/ok.jpg\n\n"
        f"named/flaky_copy.jpg\t{local_server}/img/flaky.jpg\n"
        f"{local_server}/img/missing.jpg\n"
        f"   {local_server}/img/page.jpg  \n"
        f"{refused}\n"
        f"{local_server}/img/busy.jpg\n"
        f"{local_server}/other/ok.jpg\n"
        f"{local_server}/img/octet.jpg\n"
        f"{local_server}/img/ok.jpg\n"  # repeated: downloaded once
        f"copy/ok.jpg {local_server}/img/ok.jpg\n"  # the same URL under another name
    )
    out = tmp_path / "out"
    s = fetch_urls([tmp_path / "list.txt"], out, kind="image", workers=4, retries=2,
                   backoff=0.01, timeout=5, progress=False)  # fmt: skip
    by_name = {r.name: r for r in s.results}
    assert len(s.results) == 9
    assert s.counts == {"downloaded": 5, "resumed": 1, "failed": 3}
    assert (out / "copy/ok.jpg").read_bytes() == SMALL
    assert (out / "ok.jpg").read_bytes() == SMALL and (out / "octet.jpg").read_bytes() == SMALL
    ok2 = next(n for n in by_name if n.startswith("ok_"))
    assert (out / ok2).read_bytes() == SMALL and len(ok2) == len("ok_12345678.jpg")
    # interrupted after 50 000 bytes, resumed with a Range request in the same run
    flaky = by_name["named/flaky_copy.jpg"]
    assert flaky.status == "resumed" and flaky.attempts == 2
    assert (out / "named/flaky_copy.jpg").read_bytes() == BODY
    assert [r for p, r in _Handler.seen if p == "/img/flaky.jpg"] == [None, f"bytes={CUT}-"]
    assert by_name["busy.jpg"].status == "downloaded" and by_name["busy.jpg"].attempts == 2
    assert by_name["missing.jpg"].reason.startswith("HTTP 404") and by_name["missing.jpg"].attempts == 1  # fmt: skip
    assert "text/html" in by_name["page.jpg"].reason and by_name["page.jpg"].attempts == 1
    assert by_name["refused.jpg"].status == "failed" and by_name["refused.jpg"].attempts == 3
    assert "refused" in by_name["refused.jpg"].reason.lower()
    assert not list(out.rglob("*.part")) or {p.name for p in out.rglob("*.part")} <= {"page.jpg.part"}  # fmt: skip
    assert not (out / "page.jpg").exists() and not (out / "missing.jpg").exists()
    report = json.loads((out / "fetch_report.json").read_text())
    assert report["counts"]["failed"] == 3
    assert {f["name"] for f in report["failures"]} == {"missing.jpg", "page.jpg", "refused.jpg"}
    rows = [r.split("\t") for r in (out / "fetch_report.failures.tsv").read_text().splitlines()[1:]]  # fmt: skip
    assert sorted(r[0] for r in rows) == ["missing.jpg", "page.jpg", "refused.jpg"]

    # a rerun asks the server only for what failed
    hits = dict(_Handler.hits)
    again = fetch_urls([tmp_path / "list.txt"], out, kind="image", workers=4, retries=0,
                       backoff=0.0, timeout=5, progress=False)  # fmt: skip
    assert again.counts == {"present": 6, "failed": 3}
    assert _Handler.hits["/img/flaky.jpg"] == hits["/img/flaky.jpg"]
    assert _Handler.hits["/img/missing.jpg"] == hits["/img/missing.jpg"] + 1
    # the failures file is itself a list: the names survive a retry
    from pkmodel.datatools.fetch import read_url_lists

    retry = read_url_lists([out / "fetch_report.failures.tsv"])
    assert sorted(e.name for e in retry) == ["missing.jpg", "page.jpg", "refused.jpg"]
    # kind any accepts the HTML page
    anyk = fetch_urls([out / "fetch_report.failures.tsv"], out, kind="any", retries=0, timeout=5,
                      report=tmp_path / "r.json", progress=False)  # fmt: skip
    assert anyk.counts == {"downloaded": 1, "failed": 2}
    assert (out / "page.jpg").read_bytes() == b"<html>not an image</html>"


def test_fetch_continues_a_partial_file_of_an_earlier_run(local_server, tmp_path):
    from pkmodel.datatools.fetch import fetch_urls

    (tmp_path / "list.txt").write_text(f"{local_server}/img/big.jpg\n{local_server}/img/norange.jpg\n")  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()
    (out / "big.jpg.part").write_bytes(BODY[:1234])
    (out / "norange.jpg.part").write_bytes(b"stale bytes")
    s = fetch_urls([tmp_path / "list.txt"], out, kind="image", retries=0, timeout=5, progress=False)  # fmt: skip
    by_name = {r.name: r for r in s.results}
    assert by_name["big.jpg"].status == "resumed" and by_name["big.jpg"].bytes == len(BODY) - 1234
    assert ("/img/big.jpg", "bytes=1234-") in _Handler.seen
    assert (out / "big.jpg").read_bytes() == BODY
    # a server without Range support sends the whole file, which replaces the stale part
    assert (out / "norange.jpg").read_bytes() == BODY
    assert not list(out.glob("*.part"))


def test_fetch_stops_at_the_next_chunk_when_interrupted(local_server, tmp_path):
    from pkmodel.datatools.fetch import UrlEntry, download

    stop = threading.Event()
    stop.set()  # as after Ctrl-C
    entry = UrlEntry("list.txt", 1, f"{local_server}/img/big.jpg", "big.jpg")
    r = download(entry, tmp_path, "image", retries=3, backoff=0.0, timeout=5, stop=stop)
    part = tmp_path / "big.jpg.part"
    assert (r.status, r.reason, r.attempts) == ("failed", "interrupted", 1)
    assert 0 < part.stat().st_size < len(BODY) and part.read_bytes() == BODY[: part.stat().st_size]
    assert download(entry, tmp_path, "image", timeout=5).status == "resumed"
    assert (tmp_path / "big.jpg").read_bytes() == BODY


def test_a_sigterm_during_fetch_cancels_the_queued_downloads(local_server, tmp_path, monkeypatch):
    """SIGTERM's handler raises SystemExit where the main thread is (here, at the first
    result): the downloads not started are cancelled, as after Ctrl-C, instead of the pool
    running all of them before the command can exit."""
    import tqdm

    from pkmodel.datatools.fetch import fetch_urls

    class StoppedBar:
        def __init__(self, *args, **kwargs):
            pass

        def update(self, n):
            raise SystemExit(143)

        def set_postfix(self, **kwargs):
            pass

        def close(self):
            pass

    monkeypatch.setattr(tqdm, "tqdm", StoppedBar)  # fetch_urls imports it when it runs
    (tmp_path / "list.txt").write_text(
        "".join(f"{local_server}/img/long{i}.jpg\n" for i in range(300))
    )
    out = tmp_path / "out"
    with pytest.raises(SystemExit):
        fetch_urls([tmp_path / "list.txt"], out, kind="image", retries=0, timeout=5, workers=2,
                   progress=False)  # fmt: skip
    downloaded = len(list(out.glob("long*.jpg")))
    assert 1 <= downloaded <= 10, downloaded  # the first and those already running, not 300


def test_url_lists_names_and_errors(tmp_path):
    from pkmodel.datatools.fetch import content_type_ok, read_url_lists

    (tmp_path / "a.txt").write_text(
        "\ufeff# c\nhttp://h.invalid/x/a%20b.JPG?s=1\nTree_Pose/1.jpg\thttp://h.invalid/q\n"
        "http://h.invalid/y/a%20b.JPG\nhttp://h.invalid/\n../../evil.jpg http://h.invalid/e\n"
    )
    names = [e.name for e in read_url_lists([tmp_path / "a.txt"])]
    assert names[0] == "a_b.JPG" and names[1] == "Tree_Pose/1.jpg"
    assert names[2].startswith("a_b_") and names[2].endswith(".JPG")
    assert names[3] == "download" and names[4] == "evil.jpg"
    assert [e.line for e in read_url_lists([tmp_path / "a.txt"])] == [2, 3, 4, 5, 6]
    (tmp_path / "b.txt").write_text("http://h.invalid/a.jpg\nftp://h.invalid/b.jpg\n")
    with pytest.raises(PkmodelError, match=r"b.txt line 2: 'ftp://h.invalid/b.jpg' is not an http\(s\) URL"):  # fmt: skip
        read_url_lists([tmp_path / "b.txt"])
    with pytest.raises(PkmodelError, match="does not exist"):
        read_url_lists([tmp_path / "none.txt"])
    assert content_type_ok("image/jpeg", "image", "a.bin")
    assert content_type_ok("application/octet-stream", "video", "a.mp4")
    assert not content_type_ok("application/octet-stream", "image", "a.mp4")
    assert not content_type_ok("text/html", "video", "a.mp4") and content_type_ok("text/html", "any", "a")  # fmt: skip


# --------------------------------------------------------------------------------------------
# Bad answers and bad names: each one failed entry with a one-line reason, the others download


def _files(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_fetch_shortens_names_too_long_for_the_file_system(local_server, tmp_path):
    from pkmodel.datatools.fetch import fetch_urls, read_url_lists

    long_a, long_b = "long" + "a" * 300, "long" + "a" * 299 + "b"  # alike for 250 bytes
    folder = "d" * 260
    (tmp_path / "list.txt").write_text(
        f"{local_server}/img/{long_a}.jpg\n{local_server}/img/{long_b}.jpg\n"
        f"{folder}/x.jpg {local_server}/img/long.jpg\n{local_server}/img/missing.jpg\n"
    )
    out = tmp_path / "out"
    s = fetch_urls([tmp_path / "list.txt"], out, kind="image", retries=0, timeout=5, progress=False)  # fmt: skip
    assert s.counts == {"downloaded": 3, "failed": 1}
    names = [r.name for r in s.results[:3]]
    assert len(set(names)) == 3
    for name in names:
        assert all(len(part.encode()) <= 250 for part in name.split("/"))  # room for .part
        assert name.endswith(".jpg") and (out / name).read_bytes() == SMALL
    assert names[0].startswith("long" + "a" * 200) and names[2].startswith("d" * 200)
    assert names[2].endswith("/x.jpg")
    # the same names on a rerun and when read back from a list: nothing is fetched twice
    assert [e.name for e in read_url_lists([tmp_path / "list.txt"])][:3] == names
    again = fetch_urls([tmp_path / "list.txt"], out, kind="image", retries=0, timeout=5, progress=False)  # fmt: skip
    assert again.counts == {"present": 3, "failed": 1}


def test_fetch_reasons_stay_on_one_line_and_the_failures_list_is_retried(local_server, tmp_path):
    from pkmodel.datatools.fetch import fetch_urls, one_line, read_url_lists

    assert one_line("a\r\nb\tc\x85d\u2028e  f\x00") == "a b c d e f\\x00"
    (tmp_path / "list.txt").write_text(
        f"{local_server}/img/odd-reason.jpg\n{local_server}/img/ok.jpg\n"
        f"named/x.jpg {local_server}/img/missing.jpg\n"
    )
    out = tmp_path / "out"
    s = fetch_urls([tmp_path / "list.txt"], out, kind="image", retries=0, timeout=5, progress=False)  # fmt: skip
    assert s.counts == {"downloaded": 1, "failed": 2}
    odd = next(r for r in s.results if r.name == "odd-reason.jpg")
    assert odd.reason == "HTTP 404 Not Found at all here"
    assert len(s.format().splitlines()) == 4  # the count line, two failures, the report line
    tsv = out / "fetch_report.failures.tsv"
    rows = tsv.read_text().split("\n")
    assert rows[-1] == "" and len(rows) == 4  # header, two failures, the final newline
    assert [len(r.split("\t")) for r in rows[1:3]] == [5, 5]
    # the documented retry: the failures file is the list, the names and URLs survive
    retry = read_url_lists([tsv])
    assert [(e.name, e.url) for e in retry] == [(r.name, r.url) for r in s.results if r.status == "failed"]  # fmt: skip
    again = fetch_urls([tsv], out, kind="image", retries=0, timeout=5, progress=False)
    assert again.counts == {"failed": 2}
    assert read_url_lists([tsv]) == retry  # and again


def test_fetch_caps_the_size_with_or_without_a_content_length(local_server, tmp_path):
    from pkmodel.datatools.fetch import MAX_BYTES, fetch_urls

    assert MAX_BYTES["image"] < MAX_BYTES["video"] <= MAX_BYTES["any"]
    (tmp_path / "list.txt").write_text(
        f"{local_server}/img/unsized.jpg\n{local_server}/img/huge.jpg\n{local_server}/img/ok.jpg\n"
    )
    out = tmp_path / "out"
    s = fetch_urls([tmp_path / "list.txt"], out, kind="image", retries=2, backoff=0.0, timeout=5,
                   progress=False, max_bytes=100_000)  # fmt: skip
    by_name = {r.name: r for r in s.results}
    assert s.counts == {"downloaded": 1, "failed": 2}
    unsized, huge = by_name["unsized.jpg"], by_name["huge.jpg"]
    assert unsized.reason == "the body goes on past the 100000-byte cap" and unsized.attempts == 1
    assert (
        huge.reason == "the file has 200000 bytes, over the 100000-byte cap" and huge.attempts == 1
    )
    assert _files(out).keys() == {"ok.jpg", "fetch_report.json", "fetch_report.failures.tsv"}
    # under the cap, a body without a Content-Length is whole when the server closes
    whole = fetch_urls([tmp_path / "list.txt"], tmp_path / "whole", kind="image", retries=0,
                       timeout=5, progress=False, max_bytes=400_000)  # fmt: skip
    assert whole.counts == {"downloaded": 3}
    assert (tmp_path / "whole/unsized.jpg").read_bytes() == BODY + BODY
    with pytest.raises(PkmodelError, match="size cap must be at least 1 byte"):
        fetch_urls([tmp_path / "list.txt"], out, max_bytes=0, progress=False)


def test_fetch_image_lists_check_the_magic_bytes(local_server, tmp_path):
    from pkmodel.datatools.fetch import fetch_urls, image_format

    heads = {b"\xff\xd8\xff\xdb": "JPEG", PNG[:12]: "PNG", b"GIF89a\x01\x00": "GIF",
             b"GIF87a\x01\x00": "GIF", b"RIFF\x10\x00\x00\x00WEBPVP8 ": "WebP",
             b"BM6\x00\x00\x00": "BMP", b"II*\x00\x08\x00": "TIFF", b"MM\x00*\x00\x00": "TIFF",
             b"<html>": None, b"RIFF\x10\x00\x00\x00WAVEfmt ": None, b"": None}  # fmt: skip
    assert {h: image_format(h) for h in heads} == heads
    out = tmp_path / "out"
    out.mkdir()
    (out / "big.jpg.part").write_bytes(b"<html><body>an earlier run's page")  # resumed: checked
    (out / "keep.txt").write_bytes(b"\x00 a file of the user's")
    before = _files(out)
    (tmp_path / "list.txt").write_text(
        f"{local_server}/img/fake.jpg\n{local_server}/img/tiny.jpg\n{local_server}/img/big.jpg\n"
        f"{local_server}/img/octet.png\n{local_server}/img/ok.jpg\n"
    )
    s = fetch_urls([tmp_path / "list.txt"], out, kind="image", retries=2, timeout=5, progress=False)  # fmt: skip
    by_name = {r.name: r for r in s.results}
    assert s.counts == {"downloaded": 2, "failed": 3}
    assert by_name["fake.jpg"].reason == (
        "the body is not a JPEG, PNG, GIF, WebP, BMP or TIFF image (it starts with b'<!DOCTYP')"
    )
    assert by_name["fake.jpg"].attempts == 1
    assert by_name["tiny.jpg"].reason.endswith("(it starts with b'<b>')")
    assert by_name["big.jpg"].reason.endswith("(it starts with b'<html><b')")
    assert ("/img/big.jpg", "bytes=33-") in _Handler.seen
    after = _files(out)
    assert after["keep.txt"] == before["keep.txt"]
    assert after.keys() == {"keep.txt", "octet.png", "ok.jpg", "fetch_report.json",
                            "fetch_report.failures.tsv"}  # fmt: skip
    # --kind any and video do not look at the bytes
    anyk = fetch_urls([tmp_path / "list.txt"], tmp_path / "any", kind="any", retries=0, timeout=5,
                      progress=False)  # fmt: skip
    assert anyk.counts == {"downloaded": 5}


def test_fetch_follows_redirects_only_to_http_on_the_same_host(local_server, tmp_path):
    from pkmodel.datatools.fetch import fetch_urls

    port = local_server.rsplit(":", 1)[1]
    (tmp_path / "list.txt").write_text(
        "".join(f"{local_server}{path}\n" for path in _REDIRECTS)
        + "http:///nohost.jpg\nhttp://127.0.0.1:99999/badport.jpg\n"
    )
    out = tmp_path / "out"
    s = fetch_urls([tmp_path / "list.txt"], out, kind="image", retries=2, backoff=0.0, timeout=5,
                   progress=False)  # fmt: skip
    by_name = {r.name: r for r in s.results}
    assert by_name["moved.jpg"].status == "downloaded"
    assert (out / "moved.jpg").read_bytes() == SMALL
    # https on the same host is followed (the test server speaks no TLS, so it fails later)
    assert "redirected" not in by_name["to-https.jpg"].reason
    assert by_name["to-ftp.jpg"].reason == (
        "redirected to ftp://127.0.0.1/img/ok.jpg, which is not an http or https URL"
    )
    assert by_name["to-file.jpg"].reason == (
        "redirected to file:///etc/passwd, which is not an http or https URL"
    )
    assert by_name["to-other-host.jpg"].reason == (
        f"redirected to another host localhost (http://localhost:{port}/img/ok.jpg), "
        "which is not followed"
    )
    assert by_name["nohost.jpg"].reason == "http:///nohost.jpg names no host"
    assert by_name["badport.jpg"].reason.startswith(
        "http://127.0.0.1:99999/badport.jpg is not a valid URL (Port out of range"
    )
    for name in ("to-ftp.jpg", "to-file.jpg", "to-other-host.jpg"):
        assert by_name[name].attempts == 1 and not (out / name).exists()
    assert by_name["nohost.jpg"].attempts == 0 and by_name["badport.jpg"].attempts == 0
    assert _Handler.hits.get("/img/ok.jpg") == 1  # only through the same-host redirect


def test_fetch_command_reports_each_bad_entry_and_keeps_going(local_server, tmp_path):
    from typer.testing import CliRunner

    from pkmodel.cli import app

    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.jpg").write_bytes(b"already here")
    (tmp_path / "list.txt").write_text(
        f"{local_server}/img/{'long' + 'z' * 300}.jpg\n{local_server}/img/fake.jpg\n"
        f"{local_server}/img/odd-reason.jpg\n{local_server}/img/to-ftp.jpg\n"
        f"keep.jpg {local_server}/img/ok.jpg\n"
    )
    result = CliRunner().invoke(app, ["data", "fetch", str(tmp_path / "list.txt"), "--out",
                                      str(out), "--retries", "0", "--quiet"])  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("5 URLs: 1 downloaded, 0 resumed, 1 already present, 3 failed")
    assert len(lines) == 5 and all(f"{local_server}/img/" in line for line in lines[1:4])
    assert (out / "keep.jpg").read_bytes() == b"already here"
    assert json.loads((out / "fetch_report.json").read_text())["counts"]["failed"] == 3
    assert len((out / "fetch_report.failures.tsv").read_text().splitlines()) == 4

"""`pkmodel data fetch`: download URL lists with parallel connections, retries and resume.

A list has one URL per line; blank lines and ``#`` comments are skipped. A line may name the
target file before the URL (``Tree_Pose/12.jpg<TAB>http://...``, as Yoga-82's link files do);
anything after the URL is ignored, so the failures report (name, URL, reason) is itself a list
to retry.
Without a name the file is the URL path's last part; a name that an earlier line already took
gets ``_<8 hex of the URL's SHA-1>`` before its suffix, so names are stable when a list grows.
A path part longer than the file system takes (255 bytes, less room for ``.part``) is cut and
gets ``_<8 hex of its SHA-1>`` before its suffix: the same URL always gets the same short name.

Each download streams into ``NAME.part`` and is renamed to NAME only once every byte the server
announced has arrived: a file without ``.part`` is complete, and a rerun skips it. A ``.part``
left by an interrupted run (or a dropped connection) continues with an HTTP Range request; a
server that ignores Range sends the whole file again. Network errors, 408 / 429 / 5xx and short
bodies are retried with exponential backoff (``backoff x 2^attempt`` seconds); other HTTP errors
and a wrong content type (``--kind image`` accepts image/*, ``video`` video/*; both also accept
application/octet-stream when the file name has a suffix of that kind) fail at once. For
``--kind image`` the body must also start like a JPEG, PNG, GIF, WebP, BMP or TIFF file: a
server may label an HTML page image/jpeg. A body longer than the kind's cap (``MAX_BYTES``) fails,
whether the server announces its length or not, and its partial file is deleted.

Only http and https are fetched, and a redirect is followed only to http(s) on the list URL's
host: a redirect elsewhere fails the entry and names where it led. Each failure's reason is
one line (white space runs become one space), so the failures report stays a list to retry.
"""

from __future__ import annotations

import hashlib
import http.client
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from pkmodel.common.atomic import atomic_write_json, atomic_write_text
from pkmodel.common.errors import PkmodelError, not_there

KINDS = ("image", "video", "any")
_KIND_SUFFIXES = {
    "image": frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}),
    "video": frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"}),
}
_GENERIC_TYPES = frozenset({"application/octet-stream", "binary/octet-stream"})
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_CHUNK = 1 << 16
_USER_AGENT = "pkmodel-fetch/1 (python urllib)"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# One path part of a target, with room for its ``.part`` twin under the usual 255-byte limit.
_NAME_MAX = 255 - len(".part")
_SUFFIX_MAX = 16  # a longer "suffix" is part of the name, and may be cut
# Per kind, the most bytes one download may hold: pose-dataset images are a few MB, the AIST
# videos tens of MB, COCO's largest archive (train2017.zip) 18 GB.
MAX_BYTES = {"image": 100_000_000, "video": 10_000_000_000, "any": 50_000_000_000}
_IMAGE_HEAD = 12  # bytes that tell the image formats below apart
_IMAGE_FORMATS = "JPEG, PNG, GIF, WebP, BMP or TIFF"


@dataclass(frozen=True)
class UrlEntry:
    """One download: where it came from in the list, the URL and the target (relative path)."""

    list_file: str
    line: int
    url: str
    name: str


@dataclass
class FetchResult:
    """Outcome of one URL: status 'downloaded', 'resumed', 'present' or 'failed'."""

    url: str
    name: str
    where: str  # list file:line
    status: str
    bytes: int = 0
    attempts: int = 0
    reason: str = ""


@dataclass
class FetchSummary:
    """Counts, bytes and the report files of a fetch run."""

    results: list[FetchResult]
    seconds: float
    report_json: Path | None = None
    report_tsv: Path | None = None
    counts: dict[str, int] = field(default_factory=dict)

    def format(self) -> str:
        c = self.counts
        mb = sum(r.bytes for r in self.results if r.status in ("downloaded", "resumed")) / 1e6
        lines = [
            f"{len(self.results)} URLs: {c.get('downloaded', 0)} downloaded, "
            f"{c.get('resumed', 0)} resumed, {c.get('present', 0)} already present, "
            f"{c.get('failed', 0)} failed ({mb:.1f} MB in {self.seconds:.1f} s)"
        ]
        failed = [r for r in self.results if r.status == "failed"]
        for r in failed[:10]:
            lines.append(f"  failed {r.where} {r.url}: {r.reason}")
        if len(failed) > 10:
            lines.append(f"  ... and {len(failed) - 10} more")
        if self.report_json is not None:
            lines.append(
                f"report: {self.report_json}; failures as a list to retry: {self.report_tsv}"
            )
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# URL lists


def _safe_name(text: str) -> str:
    """A relative path of safe file names (no '..', no absolute path, odd characters -> _), each
    part short enough for the file system."""
    parts = [_UNSAFE.sub("_", p).strip("._") for p in PurePosixPath(text.replace("\\", "/")).parts]
    return "/".join(_fit(p) for p in parts if p and p != "/")


def _sha1_tag(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]


def _tagged(part: str, tag: str) -> str:
    """``part`` with ``_<tag>`` before its suffix, the stem cut when the result would not fit."""
    suffix = PurePosixPath(part).suffix
    named = f"{part[: len(part) - len(suffix)]}_{tag}{suffix}"
    if len(named.encode()) <= _NAME_MAX:
        return named
    if len(suffix) > _SUFFIX_MAX:
        suffix = ""
    room = _NAME_MAX - len(f"_{tag}{suffix}".encode())
    stem = part[: len(part) - len(suffix)].encode()[:room].decode(errors="ignore")
    return f"{stem}_{tag}{suffix}"


def _fit(part: str) -> str:
    """A path part the file system takes: too long, it is cut and tagged with its own hash, so
    two long names that start alike stay apart and a rerun finds the same name."""
    return part if len(part.encode()) <= _NAME_MAX else _tagged(part, _sha1_tag(part))


def _url_name(url: str) -> str:
    path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
    return _safe_name(PurePosixPath(path).name) or "download"


def _hashed(name: str, url: str) -> str:
    p = PurePosixPath(name)
    return str(p.with_name(_tagged(p.name, _sha1_tag(url))))


def read_url_lists(paths: list[str | Path]) -> list[UrlEntry]:
    """Every URL of the lists, in order, with unique target names; a repeated line once."""
    entries: list[UrlEntry] = []
    taken: set[str] = set()
    seen: set[tuple[str, str]] = set()
    for list_path in map(Path, paths):
        if not list_path.is_file():
            raise PkmodelError(f"URL list {list_path} {not_there(list_path)}")
        try:
            text = list_path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as e:
            raise PkmodelError(f"URL list {list_path} cannot be read as UTF-8 text ({e})") from None
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            tokens = line.split()
            at = next((i for i, t in enumerate(tokens) if re.match(r"(?i)https?://", t)), None)
            if at is None:
                raise PkmodelError(
                    f"{list_path} line {number}: {tokens[0][:80]!r} is not an http(s) URL "
                    "(one URL per line, optionally after a file name)"
                )
            url = tokens[at]
            given = _safe_name(" ".join(tokens[:at])) if at > 0 else ""
            if (given, url) in seen:  # the same line again; a URL under two names is two files
                continue
            seen.add((given, url))
            name = given or _url_name(url)
            if name in taken:
                name = _hashed(name, url)
            taken.add(name)
            entries.append(UrlEntry(str(list_path), number, url, name))
    return entries


# --------------------------------------------------------------------------------------------
# One download


class _Retry(Exception):
    """A failure worth another attempt (network error, server busy, short body)."""


class _Fail(Exception):
    """A failure that another attempt would repeat (404, wrong content type); ``discard``: the
    partial file holds nothing worth resuming (not an image, over the size cap)."""

    def __init__(self, reason: str, discard: bool = False):
        super().__init__(reason)
        self.discard = discard


def one_line(text: str) -> str:
    """``text`` as one line: runs of white space (newlines, tabs, ...) become one space and other
    control characters their escapes, so a reason is one field of one line in the failures TSV."""
    flat = " ".join(text.split())
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in flat)


def url_problem(url: str) -> str:
    """Why ``url`` is not fetched, to follow the URL in a sentence ('' when it is fetched): only
    http and https URLs that name a host are."""
    try:
        parts = urllib.parse.urlsplit(url)
        hostname, _ = parts.hostname, parts.port
    except ValueError as e:
        return f"is not a valid URL ({e})"
    if parts.scheme.lower() not in ("http", "https"):
        return "is not an http or https URL"
    if not hostname:
        return "names no host"
    return ""


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to http(s) on ``host``; any other fails the entry at once."""

    def __init__(self, host: str):
        self.host = host

    def http_error_302(self, req, fp, code, msg, headers):
        location = headers.get("location") or headers.get("uri")
        if location:
            try:
                target = urllib.parse.urljoin(req.full_url, location)
            except ValueError:
                target = location
            reason = ""
            if problem := url_problem(target):
                reason = f"redirected to {target}, which {problem}"
            elif (host := urllib.parse.urlsplit(target).hostname) != self.host:
                reason = f"redirected to another host {host} ({target}), which is not followed"
            if reason:
                fp.close()
                raise _Fail(reason)
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def image_format(head: bytes) -> str | None:
    """The image format that the first bytes of a file announce (JPEG, PNG, GIF, WebP, BMP,
    TIFF), or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG"):
        return "PNG"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head.startswith(b"BM"):
        return "BMP"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "TIFF"
    return None


def _check_image(head: bytes) -> None:
    if image_format(head) is None:
        raise _Fail(
            f"the body is not a {_IMAGE_FORMATS} image (it starts with {head[:8]!r})", discard=True
        )


def content_type_ok(content_type: str, kind: str, name: str) -> bool:
    """Whether a response's Content-Type fits the list's kind (see the module docstring)."""
    if kind == "any":
        return True
    main = content_type.split(";")[0].strip().lower()
    if main.startswith(f"{kind}/"):
        return True
    return main in _GENERIC_TYPES and PurePosixPath(name).suffix.lower() in _KIND_SUFFIXES[kind]


def _content_range_start(value: str | None) -> int | None:
    m = re.match(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)", value or "")
    return int(m.group(1)) if m else None


def _attempt(
    entry: UrlEntry,
    dest: Path,
    part: Path,
    kind: str,
    timeout: float,
    stop: threading.Event,
    max_bytes: int,
    host: str,
) -> tuple[str, int]:
    """One request; returns ('downloaded' | 'resumed', bytes received) or raises _Retry/_Fail."""
    start = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": _USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
    request = urllib.request.Request(entry.url, headers=headers)
    try:
        # A fresh opener per request: proxy variables are read now, and threads share nothing.
        opener = urllib.request.build_opener(_SameHostRedirects(host))
        response = opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and start:  # the part is as long as the file, or the file changed
            part.unlink()
            raise _Retry("HTTP 416 for the resumed range: starting again") from None
        if e.code in _RETRY_STATUS:
            raise _Retry(f"HTTP {e.code} {e.reason}") from None
        raise _Fail(f"HTTP {e.code} {e.reason}") from None
    with response:
        ctype = response.headers.get("Content-Type", "")
        if not content_type_ok(ctype, kind, entry.name):
            raise _Fail(f"content type {ctype or 'missing'!r} is not {kind}/*")
        resumed = start > 0 and response.status == 206
        if resumed and _content_range_start(response.headers.get("Content-Range")) != start:
            part.unlink()
            raise _Retry("the server answered another range than asked: starting again")
        if not resumed:
            start = 0  # the server sends the whole file
        length = response.headers.get("Content-Length")
        expected = start + int(length) if length and length.isdigit() else None
        if expected is not None and expected > max_bytes:
            raise _Fail(
                f"the file has {expected} bytes, over the {max_bytes}-byte cap", discard=True
            )
        # The magic bytes are checked as soon as they are in, so a large non-image stops early.
        check_image = kind == "image"
        head = b""
        if resumed:
            with open(part, "rb") as f:
                head = f.read(_IMAGE_HEAD)
        if check_image and len(head) == _IMAGE_HEAD:
            _check_image(head)
            check_image = False
        received = 0
        with open(part, "ab" if resumed else "wb") as f:
            while True:
                try:
                    chunk = response.read(_CHUNK)
                except (OSError, http.client.HTTPException) as e:
                    raise _Retry(f"connection lost after {start + received} bytes ({e})") from None
                if not chunk:
                    break
                # Without a Content-Length only counting bounds the body.
                if start + received + len(chunk) > max_bytes:
                    raise _Fail(f"the body goes on past the {max_bytes}-byte cap", discard=True)
                f.write(chunk)
                received += len(chunk)
                if check_image and len(head) < _IMAGE_HEAD:
                    head += chunk[: _IMAGE_HEAD - len(head)]
                    if len(head) == _IMAGE_HEAD:
                        _check_image(head)
                        check_image = False
                if stop.is_set():  # Ctrl-C: keep the .part for the next run
                    raise _Fail("interrupted")
    total = start + received
    if expected is not None and total < expected:
        raise _Retry(f"connection closed after {total} of {expected} bytes")
    if total == 0:
        raise _Fail("the server sent an empty file")
    if check_image:  # a file shorter than the bytes the formats are told apart by
        _check_image(head)
    part.replace(dest)
    return ("resumed" if resumed else "downloaded"), received


def download(
    entry: UrlEntry,
    out_dir: Path,
    kind: str = "any",
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 30.0,
    stop: threading.Event | None = None,
    max_bytes: int | None = None,
) -> FetchResult:
    """Download one URL into out_dir / entry.name (see the module docstring); never raises for
    network or file trouble: the result says what happened, its reason on one line.
    ``max_bytes``: the size cap, by default ``MAX_BYTES[kind]``."""
    result = FetchResult(entry.url, entry.name, f"{entry.list_file}:{entry.line}", "failed")
    try:
        _download(entry, out_dir, kind, retries, backoff, timeout, stop, max_bytes, result)
    except OSError as e:  # the target cannot be made (a file where a folder should be, ...)
        result.status = "failed"
        result.reason = f"cannot write {e.filename or out_dir / entry.name} ({e.strerror or e})"
    result.reason = one_line(result.reason)
    return result


def _download(
    entry: UrlEntry,
    out_dir: Path,
    kind: str,
    retries: int,
    backoff: float,
    timeout: float,
    stop: threading.Event | None,
    max_bytes: int | None,
    result: FetchResult,
) -> None:
    problem = url_problem(entry.url)
    if problem:
        result.reason = f"{entry.url} {problem}"
        return
    host = urllib.parse.urlsplit(entry.url).hostname or ""
    cap = max_bytes if max_bytes is not None else MAX_BYTES[kind]
    dest = out_dir / entry.name
    part = dest.with_name(dest.name + ".part")
    if dest.is_file():
        result.status, result.bytes = "present", dest.stat().st_size
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    stop = stop or threading.Event()
    resumed_any = part.exists() and part.stat().st_size > 0
    for attempt in range(retries + 1):
        if attempt and stop.wait(backoff * 2 ** (attempt - 1)):
            result.reason = "interrupted"
            return
        result.attempts = attempt + 1
        try:
            status, received = _attempt(entry, dest, part, kind, timeout, stop, cap, host)
        except _Fail as e:
            if e.discard:
                part.unlink(missing_ok=True)
            result.reason = str(e)
            return
        except _Retry as e:
            result.reason = str(e)
            resumed_any = resumed_any or (part.exists() and part.stat().st_size > 0)
        except urllib.error.URLError as e:
            result.reason = f"{type(e).__name__}: {e.reason}"
            resumed_any = resumed_any or (part.exists() and part.stat().st_size > 0)
        except OSError as e:
            if e.filename is not None:  # a local file, not the network: another try fails alike
                raise
            result.reason = f"{type(e).__name__}: {e}"
            resumed_any = resumed_any or (part.exists() and part.stat().st_size > 0)
        except (http.client.HTTPException, ValueError) as e:
            result.reason = f"{type(e).__name__}: {e}"
            resumed_any = resumed_any or (part.exists() and part.stat().st_size > 0)
        else:
            result.status = "resumed" if resumed_any or status == "resumed" else "downloaded"
            result.bytes, result.reason = received, ""
            return


# --------------------------------------------------------------------------------------------
# A whole list


def fetch_urls(
    lists: list[str | Path],
    out_dir: str | Path,
    kind: str = "any",
    workers: int = 8,
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 30.0,
    report: str | Path | None = None,
    progress: bool = True,
    max_bytes: int | None = None,
) -> FetchSummary:
    """Download every URL of ``lists`` into ``out_dir``; writes the report (JSON) and the
    failures (TSV: name, URL, reason; a list to retry) next to it (default OUT/fetch_report.json).
    ``max_bytes``: the size cap of one file, by default ``MAX_BYTES[kind]``."""

    from tqdm import tqdm

    if kind not in KINDS:
        raise PkmodelError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if workers < 1 or retries < 0 or backoff < 0 or timeout <= 0:
        raise PkmodelError("--workers must be >= 1, --retries and --backoff >= 0, --timeout > 0")
    if max_bytes is not None and max_bytes < 1:
        raise PkmodelError(f"the size cap must be at least 1 byte, got {max_bytes}")
    entries = read_url_lists(list(lists))
    if not entries:
        raise PkmodelError(f"the URL list(s) {', '.join(map(str, lists))} hold no URL")
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PkmodelError(f"cannot create the output folder {out_dir} ({e})") from None
    t0 = time.perf_counter()
    results: list[FetchResult | None] = [None] * len(entries)
    bar = tqdm(total=len(entries), unit="file", desc="fetch", disable=not progress)
    failed = 0
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {
            pool.submit(download, e, out_dir, kind, retries, backoff, timeout, stop, max_bytes): i
            for i, e in enumerate(entries)
        }
        try:
            for future in as_completed(futures):
                i = futures[future]
                try:
                    r = future.result()
                except Exception as e:  # one entry's unforeseen error must not lose the report
                    entry = entries[i]
                    where = f"{entry.list_file}:{entry.line}"
                    reason = one_line(f"{type(e).__name__}: {e}")
                    r = FetchResult(entry.url, entry.name, where, "failed", reason=reason)
                results[i] = r
                failed += r.status == "failed"
                bar.update(1)
                bar.set_postfix(failed=failed, refresh=False)
        except BaseException:  # Ctrl-C, SIGTERM's SystemExit, or an error in this loop
            stop.set()  # running downloads stop at their next chunk; .part files stay
            for f in futures:
                f.cancel()  # the queued ones never start (the pool would run them all first)
            raise
        finally:
            bar.close()
    done = [r for r in results if r is not None]
    counts: dict[str, int] = {}
    for r in done:
        counts[r.status] = counts.get(r.status, 0) + 1
    summary = FetchSummary(done, time.perf_counter() - t0, counts=counts)
    report_json = Path(report) if report is not None else out_dir / "fetch_report.json"
    report_tsv = report_json.with_suffix(".failures.tsv")
    failures = [r for r in done if r.status == "failed"]
    atomic_write_json(
        report_json,
        {
            "lists": [str(Path(p).resolve()) for p in lists],
            "out": str(out_dir.resolve()),
            "kind": kind,
            "counts": counts,
            "seconds": round(summary.seconds, 3),
            "failures": [asdict(r) for r in failures],
        },
    )
    # name first, then the URL: read back as a list, each file keeps its name. Names and URLs
    # hold no white space (the list is split on it); the other fields are made one line, so
    # that each failure stays one line of the list.
    rows = ["# name\turl\twhere\tattempts\treason"] + [
        "\t".join([r.name, r.url, one_line(r.where), str(r.attempts), one_line(r.reason)])
        for r in failures
    ]
    atomic_write_text(report_tsv, "\n".join(rows) + "\n")
    summary.report_json, summary.report_tsv = report_json, report_tsv
    return summary


def results_by_status(summary: FetchSummary) -> dict[str, list[str]]:
    """{status: [names]}: a small helper for scripts and tests."""
    out: dict[str, list[str]] = {}
    for r in summary.results:
        out.setdefault(r.status, []).append(r.name)
    return out

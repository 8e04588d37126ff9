"""`pkmodel data fetch`: download URL lists with parallel connections, retries and resume.

A list has one URL per line; blank lines and ``#`` comments are skipped. A line may name the
target file before the URL (``Tree_Pose/12.jpg<TAB>http://...``, as Yoga-82's link files do);
anything after the URL is ignored, so the failures report (name, URL, reason) is itself a list
to retry.
Without a name the file is the URL path's last part; a name that an earlier line already took
gets ``_<8 hex of the URL's SHA-1>`` before its suffix, so names are stable when a list grows.

Each download streams into ``NAME.part`` and is renamed to NAME only once every byte the server
announced has arrived: a file without ``.part`` is complete, and a rerun skips it. A ``.part``
left by an interrupted run (or a dropped connection) continues with an HTTP Range request; a
server that ignores Range sends the whole file again. Network errors, 408 / 429 / 5xx and short
bodies are retried with exponential backoff (``backoff x 2^attempt`` seconds); other HTTP errors
and a wrong content type (``--kind image`` accepts image/*, ``video`` video/*; both also accept
application/octet-stream when the file name has a suffix of that kind) fail at once.
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
    """A relative path of safe file names (no '..', no absolute path, odd characters -> _)."""
    parts = [_UNSAFE.sub("_", p).strip("._") for p in PurePosixPath(text.replace("\\", "/")).parts]
    return "/".join(p for p in parts if p and p != "/")


def _url_name(url: str) -> str:
    path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
    return _safe_name(PurePosixPath(path).name) or "download"


def _hashed(name: str, url: str) -> str:
    p = PurePosixPath(name)
    tag = hashlib.sha1(url.encode("utf-8")).hexdigest()[:8]
    return str(p.with_name(f"{p.stem}_{tag}{p.suffix}"))


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
    """A failure that another attempt would repeat (404, wrong content type)."""


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
    entry: UrlEntry, dest: Path, part: Path, kind: str, timeout: float, stop: threading.Event
) -> tuple[str, int]:
    """One request; returns ('downloaded' | 'resumed', bytes received) or raises _Retry/_Fail."""
    start = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": _USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
    request = urllib.request.Request(entry.url, headers=headers)
    try:
        # A fresh opener per request: proxy variables are read now, and threads share nothing.
        response = urllib.request.build_opener().open(request, timeout=timeout)
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
        received = 0
        with open(part, "ab" if resumed else "wb") as f:
            try:
                while chunk := response.read(_CHUNK):
                    f.write(chunk)
                    received += len(chunk)
                    if stop.is_set():  # Ctrl-C: keep the .part for the next run
                        raise _Fail("interrupted")
            except (OSError, http.client.HTTPException) as e:
                raise _Retry(f"connection lost after {start + received} bytes ({e})") from None
    total = start + received
    if expected is not None and total < expected:
        raise _Retry(f"connection closed after {total} of {expected} bytes")
    if total == 0:
        raise _Fail("the server sent an empty file")
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
) -> FetchResult:
    """Download one URL into out_dir / entry.name (see the module docstring); never raises for
    network trouble: the result says what happened."""
    dest = out_dir / entry.name
    part = dest.with_name(dest.name + ".part")
    result = FetchResult(entry.url, entry.name, f"{entry.list_file}:{entry.line}", "failed")
    if dest.is_file():
        result.status, result.bytes = "present", dest.stat().st_size
        return result
    dest.parent.mkdir(parents=True, exist_ok=True)
    stop = stop or threading.Event()
    resumed_any = part.exists() and part.stat().st_size > 0
    for attempt in range(retries + 1):
        if attempt and stop.wait(backoff * 2 ** (attempt - 1)):
            result.reason = "interrupted"
            return result
        result.attempts = attempt + 1
        try:
            status, received = _attempt(entry, dest, part, kind, timeout, stop)
        except _Fail as e:
            result.reason = str(e)
            return result
        except _Retry as e:
            result.reason = str(e)
            resumed_any = resumed_any or (part.exists() and part.stat().st_size > 0)
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
            reason = getattr(e, "reason", None) or e
            result.reason = f"{type(e).__name__}: {reason}"
            resumed_any = resumed_any or (part.exists() and part.stat().st_size > 0)
        else:
            result.status = "resumed" if resumed_any or status == "resumed" else "downloaded"
            result.bytes, result.reason = received, ""
            return result
    return result


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
) -> FetchSummary:
    """Download every URL of ``lists`` into ``out_dir``; writes the report (JSON) and the
    failures (TSV: name, URL, reason; a list to retry) next to it (default OUT/fetch_report.json)."""

    from tqdm import tqdm

    if kind not in KINDS:
        raise PkmodelError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if workers < 1 or retries < 0 or backoff < 0 or timeout <= 0:
        raise PkmodelError("--workers must be >= 1, --retries and --backoff >= 0, --timeout > 0")
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
            pool.submit(download, e, out_dir, kind, retries, backoff, timeout, stop): i
            for i, e in enumerate(entries)
        }
        try:
            for future in as_completed(futures):
                r = future.result()
                results[futures[future]] = r
                failed += r.status == "failed"
                bar.update(1)
                bar.set_postfix(failed=failed, refresh=False)
        except KeyboardInterrupt:
            stop.set()  # running downloads stop at their next chunk; .part files stay
            for f in futures:
                f.cancel()
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
    # name first, then the URL: read back as a list, each file keeps its name.
    rows = ["# name\turl\twhere\tattempts\treason"] + [
        "\t".join([r.name, r.url, r.where, str(r.attempts), r.reason.replace("\t", " ")]) for r in failures
    ]  # fmt: skip
    atomic_write_text(report_tsv, "\n".join(rows) + "\n")
    summary.report_json, summary.report_tsv = report_json, report_tsv
    return summary


def results_by_status(summary: FetchSummary) -> dict[str, list[str]]:
    """{status: [names]}: a small helper for scripts and tests."""
    out: dict[str, list[str]] = {}
    for r in summary.results:
        out.setdefault(r.status, []).append(r.name)
    return out

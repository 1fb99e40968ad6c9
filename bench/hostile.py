"""Hostile shapes: the proxy's CPU and memory for requests built to be costly.

`.venv/bin/python bench/hostile.py [--case NAME] [--json FILE]`

Each case runs in a fresh process: it builds the request, builds the local app
as `gaemail serve` does (SDK stubs, a Maildir outbox in a temporary directory,
no fsync, no sent requests kept) on serve's werkzeug server on a loopback port,
warms it with one small message, then resets the kernel's peak-RSS mark
(/proc/self/clear_refs) and posts the request with http.client from the same
process (the request's bytes exist before the mark, so they are not counted).
Reported: the answer, CPU seconds (process time) and the peak RSS
growth over the warmed idle process, as a multiple of the request's size.
Targets (issue 10): CPU <= 2 s and memory <= 4x the request (or under 2 MiB of
growth, the allocator's granularity) for every case; the
client cases measure encoding a 25 MB message the same way.  Exit 1 when a
target is missed.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import gc
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

KEY = b"bench-key"
CPU_TARGET = 2.0
MEMORY_TARGET = 4.0
# Below this growth a ratio is the allocator's granularity, not the request's cost.
MEMORY_FLOOR_KIB = 2048
HEAD = b"From: s@example.com\r\nTo: r@example.org\r\n"


def _message(extra_headers: bytes = b"", body: bytes = b"hello\r\n") -> bytes:
    return HEAD + extra_headers + b"\r\n" + body


def subject_words() -> bytes:
    # A 1 MB Subject of 52,631 encoded words: quadratic in the stdlib's parser.
    return _message(b"Subject: " + b"=?utf-8?q?abcd?= " * 52_631 + b"\r\n")


def many_cc() -> bytes:
    return _message(b"Cc: " + b", ".join(b"a%d@b.cc" % i for i in range(111_111)) + b"\r\n")


def many_params() -> bytes:
    params = b"".join(b"; p%d=v" % i for i in range(200_000))
    return _message(b"Content-Type: text/plain" + params + b"\r\n")


def many_parts() -> bytes:
    part = b"--B\r\nContent-Type: text/plain\r\n\r\nx\r\n"
    return _message(
        b'Content-Type: multipart/mixed; boundary="B"\r\n', part * 100_000 + b"--B--\r\n"
    )


def deep_nesting() -> bytes:
    depth = 5_000
    opens = b"".join(
        b'--b%d\r\nContent-Type: multipart/mixed; boundary="b%d"\r\n\r\n' % (i, i + 1)
        for i in range(depth)
    )
    return _message(b'Content-Type: multipart/mixed; boundary="b0"\r\n', opens + b"x\r\n")


def subject_words_under_limit() -> bytes:
    # Under the header-size limit, so the encoded-word count decides.
    return _message(b"Subject: " + b"=?utf-8?q?abcd?= " * 12_000 + b"\r\n")


def cc_under_limit() -> bytes:
    return _message(b"Cc: " + b", ".join(b"a%d@b.cc" % i for i in range(25_000)) + b"\r\n")


def params_under_limit() -> bytes:
    params = b"".join(b"; p%d=v" % i for i in range(25_000))
    return _message(b"Content-Type: text/plain" + params + b"\r\n")


def many_addresses_allowed() -> bytes:
    # 500 recipients (the default cap) with display names: parsed and sent.
    cc = b", ".join(b'"Name %d, Jr." <a%d@b.cc>' % (i, i) for i in range(499))
    return _message(b"Cc: " + cc + b"\r\nSubject: " + b"=?utf-8?q?=C3=A9t=C3=A9?= " * 150 + b"\r\n")


def long_message_id() -> bytes:
    return _message(b"Message-ID: <" + b"x" * 1_000_000 + b"@example.com>\r\n")


def attachment_25mb() -> bytes:
    data = base64.encodebytes(os.urandom(18_000_000)).replace(b"\n", b"\r\n")
    body = (
        b"--B\r\nContent-Type: text/plain\r\n\r\nsee the attachment\r\n"
        b"--B\r\nContent-Type: application/pdf; name=a.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=a.pdf\r\n"
        b"\r\n" + data + b"--B--\r\n"
    )
    return _message(b'Subject: big\r\nContent-Type: multipart/mixed; boundary="B"\r\n', body)


def text_25mb() -> bytes:
    # A long report as the body itself: lines with and without colons.
    lines = b"".join(
        b"%d: backup of /srv/data/%d done, 1234 files\r\nand a line with no colon %d\r\n"
        % (i, i, i)
        for i in range(300_000)
    )
    return _message(b"Subject: report\r\nContent-Type: text/plain; charset=utf-8\r\n", lines)


def short_lines_25mb() -> bytes:
    # 12 million short lines that are not inert, one delimiter-like line in two.
    return _message(b"Subject: lines\r\n", b"a\n-\n" * 3_000_000)


SHAPES: dict[str, Callable[[], bytes]] = {
    "subject-52631-encoded-words": subject_words,
    "cc-111111-addresses": many_cc,
    "content-type-200000-params": many_params,
    "mime-100000-parts": many_parts,
    "nesting-5000-deep": deep_nesting,
    "subject-12000-encoded-words-200kb": subject_words_under_limit,
    "cc-25000-addresses-200kb": cc_under_limit,
    "content-type-25000-params-200kb": params_under_limit,
    "cc-499-named-and-150-words": many_addresses_allowed,
    "message-id-1mb": long_message_id,
    "attachment-25mb": attachment_25mb,
    "text-25mb": text_25mb,
    "short-lines-25mb": short_lines_25mb,
}
CASES = [f"v1:{name}" for name in SHAPES] + [
    "v2:subject-52631-encoded-words",
    "v2:attachment-25mb",
    "v2:text-25mb",
    "v2:text-25mb@rpc",
    "v2:short-lines-25mb",
    # "@rpc": the mail stub refuses the call at its door (OverQuota), so the figure is
    # the proxy's own cost up to the Mail API's RPC, without the local stub's copies.
    "v1:attachment-25mb@rpc",
    "v2:attachment-25mb@rpc",
    "client-v1:attachment-25mb",
    "client-v2:attachment-25mb",
]


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> None:
    gc.collect()
    # Hand freed heap back to the kernel, or later allocations reuse it unseen by RSS.
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")


def run_case(case: str) -> dict[str, object]:
    side, shape = case.split(":", 1)
    shape, _, mode = shape.partition("@")
    msg = SHAPES[shape]()
    from gaemail.protocol import v1, v2

    envelope = v2.Envelope("s@example.com", ("r@example.org",))
    if side.startswith("client"):
        _reset_peak()
        idle = _rss_kib("VmRSS")
        start = time.process_time()
        if side == "client-v1":
            _request = v1.encode_request(msg, KEY)
        else:
            key = v2.Key.from_secret(KEY)
            _, _request = v2.encode_send(msg, [key], "bench-idempotency-key", envelope, now=1)
        cpu = time.process_time() - start
        peak = _rss_kib("VmHWM") - idle
        return _result(case, len(msg), 0, cpu, peak)
    from gaemail.server import ServerConfig
    from gaemail.server.local import create_local_app

    # As gaemail serve runs it: a Maildir outbox without fsync, no sent requests kept.
    outbox = tempfile.TemporaryDirectory(prefix="gaemail-hostile-")
    app = create_local_app(ServerConfig(keys=(KEY,)), outbox.name, keep=0, fsync=False)
    if mode == "rpc":
        from google.appengine.runtime import apiproxy_errors

        app.extensions["mail_stub"].SetError(apiproxy_errors.OverQuotaError())
    if side == "v1":
        body, headers = v1.encode_request(msg, KEY), {"Content-Type": v1.CONTENT_TYPE}
    else:
        key = v2.Key.from_secret(KEY)
        headers, body = v2.encode_send(
            msg, [key], "bench-idempotency-key", envelope, now=int(time.time())
        )
    del msg
    path = "/" if side == "v1" else v2.SEND_PATH
    with _serving(app) as port:
        _post(port, "/", v1.encode_request(_message(), KEY), {"Content-Type": v1.CONTENT_TYPE})
        _reset_peak()
        idle = _rss_kib("VmRSS")
        start = time.process_time()
        status, text = _post(port, path, body, headers)
        cpu = time.process_time() - start
        peak = _rss_kib("VmHWM") - idle
    outbox.cleanup()
    # At "@rpc" the Mail API's over-quota answer is the expected one (503 in v1).
    expected = {"v1": 503, "v2": 429} if mode == "rpc" else None
    answered = f"{status} {text[:90].strip()}"
    return _result(case, len(body), status, cpu, peak, answered, expected and expected[side])


@contextlib.contextmanager
def _serving(app: Any) -> Iterator[int]:
    """The app on gaemail serve's own werkzeug server, on a loopback port, in a thread."""
    from gaemail.server.local.serve import ServeOptions, listen

    server = listen(ServeOptions(host="127.0.0.1", port=0), app)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(30)


def _post(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        connection.close()


def _result(
    case: str,
    size: int,
    status: int,
    cpu: float,
    peak_kib: int,
    answer: str = "",
    expected_status: int | None = None,
) -> dict[str, object]:
    ratio = peak_kib * 1024 / size
    return {
        "case": case,
        "bytes": size,
        "status": status,
        "cpu_s": round(cpu, 3),
        "peak_growth_x": round(ratio, 2),
        "ok": cpu <= CPU_TARGET
        and (ratio <= MEMORY_TARGET or peak_kib <= MEMORY_FLOOR_KIB)
        and (status == expected_status if expected_status else status < 500),
        "answer": answer,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=CASES, help="run one case in this process")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case)))
        return 0
    results = []
    print(f"{'case':42} {'bytes':>10} {'cpu s':>6} {'mem x':>6}  answer")
    for case in CASES:
        done = subprocess.run(
            [sys.executable, __file__, "--case", case],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            print(f"{case:42} failed: {done.stderr.strip().splitlines()[-1:]}")
            results.append({"case": case, "ok": False})
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        results.append(result)
        mark = "" if result["ok"] else "  MISSED"
        print(
            f"{case:42} {result['bytes']:>10} {result['cpu_s']:>6} {result['peak_growth_x']:>6}"
            f"  {result['answer']}{mark}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    missed = [r["case"] for r in results if not r["ok"]]
    print(
        f"targets: cpu <= {CPU_TARGET} s, memory <= {MEMORY_TARGET}x;",
        f"missed: {missed or 'none'}",
    )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())

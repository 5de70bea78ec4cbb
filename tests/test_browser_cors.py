"""CORS from a real browser: headless Chromium (Debian's package, installed by .ci/run) loads a page from
another origin that uploads and downloads through fetch() with presigned URLs, as a web app would."""

from __future__ import annotations

import html
import http.server
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: .ci/run installs Debian's package")

PAGE = """<!doctype html><html><body><pre id="out">running</pre><script>
const out = document.getElementById("out");
(async () => {
  const lines = [];
  try {
    const put = await fetch(%(put)s, {method: "PUT", body: "hello from the browser",
                                      headers: {"Content-Type": "text/plain"}});
    lines.push("put " + put.status + " etag " + put.headers.get("ETag"));
    const got = await fetch(%(get)s);
    lines.push("get " + got.status + " " + (await got.text()));
  } catch (e) { lines.push("allowed bucket failed: " + e); }
  try {
    await fetch(%(blocked)s, {method: "PUT", body: "x", headers: {"Content-Type": "text/plain"}});
    lines.push("blocked bucket: not blocked");
  } catch (e) { lines.push("blocked bucket: blocked"); }
  out.textContent = lines.join("\\n");
})();
</script></body></html>"""


@pytest.fixture
def page_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A plain web server for the page: its origin is not the gateway's."""
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    server.shutdown()


def test_a_page_on_another_origin_uploads_and_downloads(s3, bucket: str, page_server) -> None:  # type: ignore[no-untyped-def]
    import json
    import uuid

    origin, root = page_server
    s3.put_bucket_cors(
        Bucket=bucket,
        CORSConfiguration={"CORSRules": [{"AllowedOrigins": [origin], "AllowedMethods": ["GET", "PUT"],
                                          "AllowedHeaders": ["*"], "ExposeHeaders": ["ETag"]}]},
    )  # fmt: skip
    closed = f"no-cors-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=closed)
    try:
        put = s3.generate_presigned_url(
            "put_object", Params={"Bucket": bucket, "Key": "from-browser.txt", "ContentType": "text/plain"}
        )
        get = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "from-browser.txt"})
        blocked = s3.generate_presigned_url(
            "put_object", Params={"Bucket": closed, "Key": "x", "ContentType": "text/plain"}
        )
        (root / "page.html").write_text(PAGE % {"put": json.dumps(put), "get": json.dumps(get),
                                                "blocked": json.dumps(blocked)})  # fmt: skip
        assert CHROMIUM is not None
        dom = subprocess.run(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--virtual-time-budget=20000", "--dump-dom", f"{origin}/page.html"],
            capture_output=True, text=True, timeout=120,
        ).stdout  # fmt: skip
        found = re.search(r'<pre id="out">(.*?)</pre>', dom, re.S)
        assert found, dom[-2000:]
        report = html.unescape(found.group(1))
        etag = s3.head_object(Bucket=bucket, Key="from-browser.txt")["ETag"]
        assert f"put 200 etag {etag}" in report, report  # the exposed ETag is readable by the page
        assert "get 200 hello from the browser" in report, report
        assert "blocked bucket: blocked" in report, report
        assert s3.get_object(Bucket=bucket, Key="from-browser.txt")["Body"].read() == b"hello from the browser"
        with pytest.raises(ClientError):
            s3.head_object(Bucket=closed, Key="x")  # the refused preflight kept the PUT from being sent
    finally:
        s3.delete_bucket(Bucket=closed)

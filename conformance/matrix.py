"""The client x operation feature matrix: its JSON record and the CONFORMANCE.md rendered from it."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MATRIX_JSON = REPO / "conformance" / "results" / "matrix.json"
CONFORMANCE_MD = REPO / "CONFORMANCE.md"

# Columns, in order: id used by the tests' `cell` marker -> heading.
CLIENTS: dict[str, str] = {
    "aws-cli": "AWS CLI",
    "boto3": "boto3",
    "rclone": "rclone",
    "s3cmd": "s3cmd",
    "minio-py": "minio-py",
}

# Rows, in order: id used by the tests' `cell` marker -> what the row checks.
OPERATIONS: dict[str, str] = {
    "buckets": "buckets: create, list, head, delete",
    "objects": "objects: put, get, head, delete",
    "metadata": "metadata: user `x-amz-meta-*` and Content-Type",
    "copy": "server-side copy",
    "range": "range GET",
    "list_delimiter": "listing with prefix and delimiter",
    "list_paging": "listing across pages",
    "batch_delete": "batch delete (DeleteObjects)",
    "multipart": "multipart upload (12 MiB)",
    "versions": "versioning: enable, list versions, read and delete one by id",
    "tagging": "tags on an object and on a bucket: set, read, remove",
    "presigned_get": "presigned GET URL, used by a plain HTTP client",
    "presigned_put": "presigned PUT URL, used by a plain HTTP client",
    "sync": "directory sync",
}

PASS, FAIL, NOT_APPLICABLE = "pass", "fail", "n/a"
STATUSES = (PASS, FAIL, NOT_APPLICABLE)
SYMBOLS = {PASS: "✅", FAIL: "❌", NOT_APPLICABLE: "—"}


def is_complete(matrix: dict[str, Any]) -> bool:
    """Every row x column of the record has one of the three final statuses."""
    cells = matrix.get("cells", {})
    return all(
        cells.get(client, {}).get(op, {}).get("status") in STATUSES
        for client in matrix.get("clients", {})
        for op in matrix.get("operations", {})
    )


def load(path: Path = MATRIX_JSON) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def dump(matrix: dict[str, Any], path: Path = MATRIX_JSON) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(matrix, indent=2, ensure_ascii=False, sort_keys=False) + "\n", encoding="utf-8")


def _escape(text: str) -> str:
    # A pipe would split a table cell; newlines would end the table row.
    return " ".join(text.split()).replace("|", "\\|")


def render(matrix: dict[str, Any]) -> str:
    """CONFORMANCE.md as a pure function of the JSON record (so the committed file can be re-derived and checked)."""
    clients: dict[str, dict[str, str]] = matrix["clients"]
    operations: dict[str, str] = matrix["operations"]
    cells: dict[str, dict[str, dict[str, str]]] = matrix["cells"]
    lines = [
        "# S3 client conformance",
        "",
        "<!-- Generated from conformance/results/matrix.json by `python -m conformance.matrix`;",
        "     the conformance suite rewrites both after a complete run. Do not edit by hand. -->",
        "",
        "Real S3 clients driven against the nats-s3 gateway by the conformance suite in `conformance/`",
        "(run with the rest of the tests by `python -m pytest -q`, or alone with `python -m pytest -q conformance`).",
        "",
        f"- Date: {matrix['date']} (UTC)",
        f"- NATS: {matrix['nats']}",
        f"- Gateway: {matrix['gateway']}",
        f"- Suite run time: {matrix['duration_s']} s",
        "",
        "| operation | " + " | ".join(_escape(client["name"]) for client in clients.values()) + " |",
        "| --- | " + " | ".join(":-:" for _ in clients) + " |",
    ]
    notes: list[str] = []
    for op, label in operations.items():
        row = []
        for client_id, client in clients.items():
            cell = cells.get(client_id, {}).get(op, {})
            status = cell.get("status", "")
            row.append(SYMBOLS.get(status, "?"))
            if status != PASS and cell.get("note"):
                notes.append(f"- {client['name']}, {label}: {SYMBOLS.get(status, '?')} {_escape(cell['note'])}")
        lines.append(f"| {_escape(label)} | " + " | ".join(row) + " |")
    lines += [
        "",
        "✅ works · ❌ fails: a gateway bug, kept as a strict xfail until fixed (see notes) · "
        "— the client has no such feature (see notes)",
        "",
        "## Client versions",
        "",
        "| client | version |",
        "| --- | --- |",
    ]
    lines += [f"| {_escape(client['name'])} | {_escape(client['version'])} |" for client in clients.values()]
    if notes:
        lines += ["", "## Notes", "", *notes]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.matrix", description=__doc__)
    parser.add_argument("--json", type=Path, default=MATRIX_JSON, help="matrix record (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=CONFORMANCE_MD, help="markdown to write (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if --out is not the rendering")
    args = parser.parse_args(argv)
    text = render(load(args.json))
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            sys.stderr.write(f"{args.out} is not the rendering of {args.json}: run python -m conformance.matrix\n")
            return 1
        return 0
    args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

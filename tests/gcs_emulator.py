"""Runs the `gcp-storage-emulator` GCS emulator on loopback for the gs:// tests.

  python tests/gcs_emulator.py PORT BUCKET [BUCKET ...] [--data_dir DIR]

In memory by default; with `--data_dir` the objects live in DIR, so an emulator killed and
started again on the same DIR serves what was written before (the "store gone mid-run" test).

The emulator is a test dependency (setup.py's `test` extra). It does not implement GCS's
generation preconditions, which the build lock relies on (`ifGenerationMatch=0`: create only if
absent; `ifGenerationMatch=G`: replace or delete only generation G). This runner adds them
exactly as GCS documents them (HTTP 412 when the precondition fails) before starting the
server. The emulator serves one request at a time, so the check and the write cannot interleave.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from http import HTTPStatus

from gcp_storage_emulator import server
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import buckets, objects


def _precondition_failed(request, storage, bucket: str, name: str | None) -> bool:
    wanted = request.query.get("ifGenerationMatch")
    if not wanted or name is None:
        return False
    try:
        current = storage.get_file_obj(bucket, name)["generation"]
    except NotFound:
        current = "0"
    return str(current) != wanted[0]


def _refuse(response) -> None:
    response.status = HTTPStatus.PRECONDITION_FAILED
    response.json({"error": {"code": 412, "message": "conditionNotMet",
                             "errors": [{"reason": "conditionNotMet", "message": "Precondition Failed"}]}})


def _upload_name(request) -> str | None:
    if "name" in request.query:
        return request.query["name"][0]
    data = request.data
    if isinstance(data, dict):
        meta = data.get("meta") or data
        return meta.get("name") if isinstance(meta, dict) else None
    return None


def _insert(request, response, storage, *args, **kwargs):
    if _precondition_failed(request, storage, request.params["bucket_name"], _upload_name(request)):
        return _refuse(response)
    return _original_insert(request, response, storage, *args, **kwargs)


def _delete(request, response, storage, *args, **kwargs):
    if _precondition_failed(request, storage, request.params["bucket_name"], request.params["object_id"]):
        return _refuse(response)
    return _original_delete(request, response, storage, *args, **kwargs)


_original_insert, _original_delete = objects.insert, objects.delete


def _patch_handlers() -> None:
    objects.insert = _insert  # the router's fallback for uploads without the /upload prefix
    for _, handlers in server.HANDLERS:
        for method, handler in list(handlers.items()):
            if handler is _original_insert:
                handlers[method] = _insert
            elif handler is _original_delete:
                handlers[method] = _delete


def main(argv: list[str]) -> int:
    data_dir = None
    if "--data_dir" in argv:
        at = argv.index("--data_dir")
        data_dir, argv = argv[at + 1], argv[:at] + argv[at + 2:]
    port, names = int(argv[0]), argv[1:]
    logging.basicConfig(level=logging.CRITICAL)
    _patch_handlers()
    emulator = server.create_server("127.0.0.1", port, in_memory=data_dir is None, data_dir=data_dir)
    for name in names:
        buckets.create_bucket(name, emulator._storage)  # pylint: disable=protected-access  (kept if there)
    emulator.start()
    print(json.dumps({"port": port, "buckets": names}), flush=True)
    try:
        while True:  # serves until killed
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""pipeline.errors: which failures are the object store's (the launcher reports those in one line)."""

from __future__ import annotations

from pipeline.errors import storage_failure

# Where Beam's GCS client raised when the store went away in a batch copy (seen in a CI run).
_GCSIO = "/venv/lib/python3.11/site-packages/apache_beam/io/gcp/gcsio.py"


def test_storage_failure_finds_the_store_behind_a_pipeline_error_and_nothing_else():
    from google.api_core import exceptions as gexc

    try:
        try:
            raise gexc.ServiceUnavailable("backend gone")
        except gexc.ServiceUnavailable as inner:
            raise OSError("write failed") from inner
    except OSError as outer:
        assert storage_failure(outer) == "ServiceUnavailable: 503 backend gone"
    # Beam re-raises a worker's exception as a RuntimeError that carries only its text.
    beam = RuntimeError("google.api_core.exceptions.ServiceUnavailable: 503 backend gone\nTraceback ...")
    assert storage_failure(beam) == "google.api_core.exceptions.ServiceUnavailable: 503 backend gone"
    assert storage_failure(RuntimeError("ValueError: a bug in a DoFn")) is None
    assert storage_failure(KeyError("google")) is None


def test_storage_failure_looks_into_beam_io_errors_and_leaves_local_disks_out():
    from apache_beam.io.filesystem import BeamIOError
    from google.api_core import exceptions as gexc

    remote = BeamIOError("List operation failed", {"gs://b/out/": gexc.ServiceUnavailable("gone")})
    assert storage_failure(remote) == "ServiceUnavailable: 503 gone"
    local = BeamIOError("Rename operation failed", {"/data/out/x": OSError(28, "No space left on device")})
    assert storage_failure(local) is None


def test_an_error_raised_inside_the_gcs_client_is_the_stores_even_when_it_is_an_attribute_error():
    namespace: dict = {}
    exec(compile("def copy_batch(resp):\n    return resp.status_code\n", _GCSIO, "exec"), namespace)  # noqa: S102
    try:
        namespace["copy_batch"](None)
    except AttributeError as error:
        assert storage_failure(error) == "AttributeError: 'NoneType' object has no attribute 'status_code'"
    try:
        None.status_code  # noqa: B018  (the same error raised in project code: not the store's)
    except AttributeError as error:
        assert storage_failure(error) is None


def test_a_worker_traceback_carried_as_text_is_read_to_its_innermost_frame():
    # What the local runner raises when a worker process failed (its traceback as the message).
    frames = ('Traceback (most recent call last):\n'
              '  File "apache_beam/runners/common.py", line 1512, in apache_beam.runners.common.DoFnRunner.process\n'
              '  File "/repo/transforms/write.py", line 111, in process\n'
              '    with atomic_write(shardindex.index_path(path)) as index_file:\n')
    store = RuntimeError(frames + f'  File "{_GCSIO}", line 497, in copy_batch\n    if resp.status_code >= 400:\n'
                         "AttributeError: 'NoneType' object has no attribute 'status_code' [while running 'Write']\n")
    assert storage_failure(store) == ("AttributeError: 'NoneType' object has no attribute 'status_code' "
                                      "[while running 'Write']")
    bug = RuntimeError(frames + "KeyError: 'figures' [while running 'Write']\n")
    assert storage_failure(bug) is None

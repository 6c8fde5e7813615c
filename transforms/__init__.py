"""Beam PTransforms and DoFns of the dataset builder."""

from pipeline import logs as _logs

if _logs.in_sdk_worker():
    # A Beam SDK worker process imports this package before any DoFn touches TensorFlow: import
    # it here, once, without its C++ start-up lines (one set per worker process otherwise).
    _logs.import_tensorflow()

"""The run's Beam metrics: one namespace, one counter per outcome.

Every transform counts under :data:`NAMESPACE`; ``pipeline.build`` queries that namespace for
the run summary, so a counter made here shows up there without further wiring. RunInference's
own metrics stay under its per-model namespaces (``video_features_rgb``, ``video_features_audio``).
"""

from __future__ import annotations

from apache_beam.metrics.metric import Metrics

NAMESPACE = "video_features"


def counter(name: str) -> Metrics.DelegatingCounter:
    """The counter ``name`` of this pipeline's namespace (e.g. ``rows_read``, ``clips_fetched``).

    Args:
        name: Counter name, snake_case, one per outcome.

    Returns:
        A counter to ``inc()``; cheap to create, so it may be made per element.
    """
    return Metrics.counter(NAMESPACE, name)


def distribution(name: str) -> Metrics.DelegatingDistribution:
    """The distribution ``name`` of this pipeline's namespace (e.g. ``clip_seconds``).

    Args:
        name: Distribution name, snake_case.

    Returns:
        A distribution to ``update(int)``.
    """
    return Metrics.distribution(NAMESPACE, name)


def count_failure(reason: str) -> None:
    """Adds one to ``failed_<reason>``, the counter of a clip that became a failure line.

    Args:
        reason: The failure's stable reason tag (``video_unavailable``, ``internal_error``, ...).
    """
    counter(f"failed_{reason}").inc()

"""Beam PTransforms and DoFns of the dataset builder."""

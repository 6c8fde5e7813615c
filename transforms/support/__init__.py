"""Helpers of the Beam stages that are not stages themselves."""

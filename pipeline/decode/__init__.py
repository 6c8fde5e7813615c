"""Probing and decoding media with ffmpeg."""

"""The Beam-free code of the dataset builder, one subpackage per stage of the flow.

read/ (annotation CSVs) -> fetch/ (remote clips) and net/ (HTTP, confinement) -> decode/ (ffmpeg)
-> features/ (models, PCA, quantization) -> dataset/ (records, shards, index, output directory).
cli/ holds the commands; pipeline/NAME.py launchers keep `python -m pipeline.NAME` working for
build, inspect, report, sample, download_yt8m and doctor. testing/ holds shared fixtures.
The Beam stages that call this code are in transforms/.
"""

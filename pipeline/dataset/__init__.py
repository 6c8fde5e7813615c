"""The written dataset: records, TFRecord framing, the shard id index, the output directory."""

"""Reading annotation CSVs: formats, parallel splits, one ClipRequest per row."""

"""Feature models: Inception-v3 (RGB) and VGGish (audio), their artifacts and PCA."""

"""Entry points, options and pure (Beam-free) media, feature and record code."""

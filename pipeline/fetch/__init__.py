"""Fetching remote clips: the per-clip fetcher and yt-dlp."""

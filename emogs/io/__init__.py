"""File I/O: video and audio via PyAV (FFmpeg), atomic writes, model asset locations."""

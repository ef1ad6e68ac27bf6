"""`emogs studio`: drive a trained head live in the browser.

Rooms inside:
  controls.py  the slider / preset state the page sends, validated, and the per-frame AU plan it makes;
  stream.py    per-frame rendering for live use (frame t from the audio features at t and the controls in
               force at t, with the centred AU window CIT-AE needs), the record of what was played, its
               export as frames and as an `emogs render --au-timeline` CSV / JSON;
  measure.py   AUs measured on rendered frames (MediaPipe), for the page's requested-vs-measured plot;
  server.py    the aiohttp web server: the page, a WebSocket for controls and JPEG frames, uploads;
  static/      the page (plain HTML / JS / CSS, no build step).
"""

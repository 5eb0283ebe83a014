"""The Python client (``sdk``), written from PROTOCOL.md alone, and the ``gpux`` command line."""

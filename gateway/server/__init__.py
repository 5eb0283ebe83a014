"""The adapters around the core: the websocket and HTTP server, durability, the process."""

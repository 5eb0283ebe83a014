"""The request core: what a request means and what follows from a command, with no
sockets, threads, files or clock of its own (the server adapters supply those)."""

"""The demo: simulated participants trading the embedded default's market."""

"""The market page: its static files and how the server hands them out."""

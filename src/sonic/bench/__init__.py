"""Load generation and analysis against any v2 server."""

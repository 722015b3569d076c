"""Local development helpers (stand-ins for cloud services); not deployed."""

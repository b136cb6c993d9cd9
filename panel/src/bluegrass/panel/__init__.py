"""The web UI: the Pi's LAN panel and the cloud's history browser (not built yet)."""

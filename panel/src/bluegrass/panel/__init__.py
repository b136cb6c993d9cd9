"""The web UI: the Pi's LAN panel and the cloud's history browser.

    from bluegrass.panel import PanelConfig, create_app
    app = create_app(PanelConfig(backend=my_backend, secret_key=...))

The backend (bluegrass.panel.backend.Backend) is where the data comes from; docs/panel.md.
"""

from bluegrass.panel.app import PanelConfig, create_app

__all__ = ["PanelConfig", "create_app"]

"""The web UI: the Pi's LAN panel and the cloud's history browser.

    from bluegrass.panel import PanelConfig, create_app
    app = create_app(PanelConfig(backend=my_backend, secret_key=...))

The backend (bluegrass.panel.backend.Backend) is where the data comes from; docs/panel.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bluegrass.panel.app import PanelConfig, create_app

__all__ = ["PanelConfig", "create_app"]


def __getattr__(name: str) -> object:
    # Loaded on first use: bluegrass.panel.accounts is imported by the cloud's one-shot login
    # checks, which need neither Flask nor the app.
    if name in __all__:
        from bluegrass.panel import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

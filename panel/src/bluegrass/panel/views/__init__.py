"""The panel's blueprints: auth (setup, login), dashboard (status, jobs), browse, admin."""

# gunicorn settings for bluegrass-panel.service (the app itself is BLUEGRASS_PANEL_APP in
# the unit). A Pi 3 has 1 GB of memory: two workers with a few threads each.
bind = ["0.0.0.0:80"]
workers = 2
worker_class = "gthread"
threads = 4
# A long archive download occupies a thread, not the worker's heartbeat.
timeout = 120
graceful_timeout = 20
accesslog = "-"
errorlog = "-"

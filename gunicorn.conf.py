"""gunicorn's own settings: gunicorn reads ./gunicorn.conf.py from its working directory, so every web
server started from the checkout or the image (make run, docker compose, the test stacks) gets them.

With LOG_FORMAT=json, gunicorn's own lines (boot, worker exits and timeouts) are JSON objects like
Django's (newsrec/json_logs.py), so a log collector parses one format from the web container.
"""

import os

if os.environ.get("LOG_FORMAT") == "json":
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "newsrec.json_logs.JsonFormatter"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "loggers": {
            "gunicorn.error": {"handlers": ["console"], "level": "INFO", "propagate": False},
            "gunicorn.access": {"handlers": ["console"], "level": "INFO", "propagate": False},
        },
    }

#!/usr/bin/env bash
# `make run`: migrate, load the demo, then run web, one worker per queue and the scheduler together.
set -euo pipefail
cd "$(dirname "$0")/.."
export NEWSREC_DEMO="${NEWSREC_DEMO:-1}" PORT="${PORT:-8000}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
mkdir -p var/log
.venv/bin/python manage.py migrate --noinput
.venv/bin/python manage.py load_demo
echo
echo "newsrec: http://127.0.0.1:$PORT/admin/  API: http://127.0.0.1:$PORT/api/  (Ctrl-C stops everything)"
echo
exec .venv/bin/supervisord -c scripts/supervisord.conf

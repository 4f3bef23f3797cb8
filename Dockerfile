# One image for every service (web, workers, scheduler); docker-compose.yml picks the command.
FROM python:3.11-slim

# HF_HUB_OFFLINE: the embedding model ships inside a pip package, so nothing is downloaded at run time.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1

WORKDIR /app

# Dependencies first, so code changes reuse this layer. requirements.txt pins torch==2.13.0; the
# extra index offers 2.13.0+cpu, which pip prefers to PyPI's CUDA build (a few GB smaller).
COPY requirements.txt .
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu -r requirements.txt

COPY . .

# collectstatic needs settings to load, and DEBUG=0 needs a SECRET_KEY: a dummy one, used only here.
# var/ is created owned by the app user so a fresh named volume mounted there is writable by it.
# compileall: with PYTHONDONTWRITEBYTECODE every process (a recycled worker too) would compile the
# project's modules again as it starts, ~0.3 s each; the installed packages were compiled by pip.
RUN useradd --create-home --uid 10001 app \
    && DEBUG=0 SECRET_KEY=collectstatic-only-not-a-secret python manage.py collectstatic --noinput \
    && python -m compileall -q articles newsrec pipeline manage.py \
    && mkdir -p /app/var \
    && chown -R app:app /app/var

USER app

EXPOSE 8000
CMD ["gunicorn", "newsrec.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "2", "--threads", "4"]

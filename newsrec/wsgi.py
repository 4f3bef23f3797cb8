import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "newsrec.settings")
# A web process embeds one short search query at a time: one torch (OpenMP) thread answers it in ~10 ms,
# while two threads per process contend with each other and with the other workers (search p90 ~10x
# worse in benchmarks/bench_search.py). Scale the web server with processes instead. Set before torch loads.
os.environ.setdefault("OMP_NUM_THREADS", "1")
application = get_wsgi_application()

# kaq service image: `docker build -t kaq .` then
#   docker run -p 8000:8000 -v kaq-data:/data kaq
# Rulesets are baked in at /app/rulesets; mount another folder there to change them
# (then `docker kill -s HUP` reloads without a restart). Replicas share their rulesets
# through PostgreSQL instead: -e KAQ_DB_URL=postgresql://... -e KAQ_RULESET_SOURCE=db, and
# `kaq publish` (docs/deploy.md). The studio (GET /studio) edits /app/rulesets in place and
# keeps its versions in /app/rulesets/.kaq-history: give -e KAQ_EDITOR_TOKEN=... to enable it,
# and mount a volume there to keep what is saved.

# --- studio: the page of GET /studio, CodeMirror 6 bundled by esbuild (npm ci: the lock file)
FROM node:20-slim AS studio
WORKDIR /studio
COPY studio/package.json studio/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY studio/build.mjs ./
COPY studio/src ./src
RUN npm run build

# --- build: compilers live only here (durable_rules is a C extension) -------------
FROM python:3.11-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, so code changes do not rebuild them: the list is read from
# pyproject.toml, so it cannot drift. README.md too: pyproject.toml names it as the readme.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt
# Every package pyproject.toml installs, and the default rulesets that ship inside engine/
# (tests/test_packaging.py checks this list against pyproject.toml).
COPY engine ./engine
COPY api ./api
COPY cli ./cli
COPY rulesets ./rulesets
RUN pip install --no-deps .

# --- runtime: the venv, the rulesets, an unprivileged user ------------------------
FROM python:3.11-slim AS runtime
RUN groupadd --system kaq && useradd --system --gid kaq --home-dir /app --shell /usr/sbin/nologin kaq \
 && mkdir -p /app /data && chown kaq:kaq /data
COPY --from=build /opt/venv /opt/venv
COPY --chown=kaq:kaq rulesets /app/rulesets
COPY --from=studio /studio/dist /app/studio
ENV PATH=/opt/venv/bin:$PATH \
    KAQ_STUDIO_ASSETS=/app/studio \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    KAQ_RULESETS=/app/rulesets \
    KAQ_DB_URL=sqlite:////data/kaq.db
WORKDIR /app
USER kaq
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
# One process per worker (durable_rules is not shared between threads); scale with --workers.
CMD ["kaq", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]

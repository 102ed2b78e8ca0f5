# One image, many roles: web (gunicorn), GPU worker, CPU worker and beat differ only in their command.
FROM node:20-bookworm-slim AS frontend
WORKDIR /app/frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY frontend/ ./
RUN npm run build

FROM python:3.11-slim-bookworm
# A container from this image runs as production (secret checks, secure cookies) unless told DJANGO_DEBUG=true.
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DJANGO_DEBUG=false
WORKDIR /app
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
COPY --from=frontend /app/frontend/dist ./frontend/dist
# collectstatic needs no secrets: DEBUG on, so the settings' checks of the key and the database password stay off.
RUN DJANGO_DEBUG=true DJANGO_SECRET_KEY=build-only python manage.py collectstatic --noinput
RUN useradd --create-home app && mkdir -p /app/var && chown -R app /app/var
USER app
EXPOSE 8000
# gunicorn.conf.py: sync workers, 4 per core, backlog 2048, CONN_MAX_AGE 60 (see the file for why).
CMD ["gunicorn", "-c", "gunicorn.conf.py", "backend.wsgi:application", "--bind", "0.0.0.0:8000"]

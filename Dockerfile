FROM python:3.11-slim-bookworm

# One image for the web server and the workers. TORCH_INDEX selects the PyTorch build:
# the CUDA wheels for GPU workers (default), or https://download.pytorch.org/whl/cpu.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu126
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    VAR_DIR=/var/lib/recontrial STATIC_ROOT=/srv/static

RUN apt-get update && apt-get install -y --no-install-recommends libpq5 \
       libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home --home-dir /srv/app recontrial

WORKDIR /srv/app
COPY requirements.txt .
RUN pip install --extra-index-url "$TORCH_INDEX" -r requirements.txt
COPY --chown=recontrial . .
RUN mkdir -p "$VAR_DIR" "$STATIC_ROOT" && chown -R recontrial "$VAR_DIR" "$STATIC_ROOT" \
    && DJANGO_ENV=development python manage.py collectstatic --no-input -v0

USER recontrial
EXPOSE 8000
CMD ["gunicorn", "mriplatform.wsgi", "--bind", "0.0.0.0:8000", "--workers", "4", "--timeout", "120"]

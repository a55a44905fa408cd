# One image for worker, beat and web; the command picks the role.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY worker ./worker
RUN pip install .

# Templates and the default config are package data inside the installed package.
ENV NEWSLETTER_VAR_DIR=/app/var
RUN useradd --create-home --uid 10001 newsletter && mkdir -p /app/var && chown newsletter /app/var
USER newsletter

EXPOSE 8000
CMD ["newsletter", "web", "--host", "0.0.0.0", "--port", "8000"]

# One image for every service of the suite; docker-compose.yml picks the command.
FROM python:3.13-slim
COPY --from=ghcr.io/astral-sh/uv:0.9.8 /uv /usr/local/bin/uv
ENV UV_PYTHON_DOWNLOADS=never UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
COPY libs libs
COPY services services
# The load tool is a workspace member too (`uv sync --locked` needs every member); the image can run it.
COPY tools/load tools/load
RUN uv sync --locked --all-packages --no-dev
ENV PATH=/app/.venv/bin:$PATH
USER nobody

# The aiaas image of infra/kafka/docker-compose.yml: the CLI and the serving extra (inference
# workers, the HTTP bridge); `aiaas acl apply` runs from it too. Built from this repository:
#   docker build -f infra/aiaas.Dockerfile -t aiaas:latest .
FROM python:3.11-slim
COPY . /src
RUN pip install --no-cache-dir "/src[serve]" && rm -rf /src
WORKDIR /work
ENV AIAAS_STATE_DIR=/state
CMD ["aiaas", "--help"]

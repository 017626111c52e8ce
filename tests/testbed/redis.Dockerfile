# The test bed's stand-in for the official Redis image that examples/redis.yaml names
# (docker.io/library/redis:7.0), which cannot be pulled here: Debian bookworm's
# redis-server (7.0) on the test bed's base, built by testbed/images.py and imported under
# that name, so the example runs unchanged. Like the official image: user `redis` 999:999,
# /data owned by it as the working directory, `redis-server` and `redis-cli` on PATH. The
# example gives the whole command line, so the official entrypoint script is not needed.
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim
# The user first, with the official image's ids: the package then keeps it.
RUN groupadd --system --gid 999 redis \
    && useradd --system --uid 999 --gid redis --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin redis \
    && apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
       /usr/share/doc/* /usr/share/man/* \
    && mkdir -p /data \
    && chown redis:redis /data
WORKDIR /data
USER 999:999
EXPOSE 6379
CMD ["redis-server"]

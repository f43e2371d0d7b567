# minicrm programs on Debian 12, built with the repo's own scripts. One image, one program per
# container (see docker-compose.yml). Production talks to real MongoDB and Redis.
FROM debian:12 AS build
WORKDIR /src
COPY . .
RUN bash scripts/install-deps.sh && BUILD_TYPE=Release bash scripts/build.sh

FROM debian:12
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libmongoc-1.0-0 libbson-1.0-0 libhiredis0.14 libmicrohttpd12 libjansson4 libconfig9 \
      libcurl4 libssl3 libpcre2-8-0 libjemalloc2 ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/build/bin/ /usr/local/bin/
# The dashboard's files, where minicrm-api looks next to its binary (bin/../share/minicrm/web).
COPY web/ /usr/local/share/minicrm/web/
COPY config/minicrm.cfg /etc/minicrm/minicrm.cfg
ENV MINICRM_CONFIG=/etc/minicrm/minicrm.cfg
RUN useradd --system --no-create-home minicrm
USER minicrm
EXPOSE 5000
CMD ["minicrm-api"]

# The stage-2 app process, for docker-compose.yml (build context: the repo).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p stage-2 && cp target/release/stage-2 /stage-2

FROM debian:bookworm-slim
COPY --from=build /stage-2 /usr/local/bin/stage-2
ENV MINIGRAM_LISTEN=0.0.0.0:8081 \
    MINIGRAM_DATA_DIR=/data
VOLUME /data
EXPOSE 8081
ENTRYPOINT ["stage-2"]

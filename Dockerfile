# A qpchat node: a static binary on an empty image.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# .dockerignore keeps .git out of the context, so pass the commit in:
#   docker compose build --build-arg COMMIT=$(git rev-parse --short HEAD)
ARG COMMIT=unknown
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.commit=${COMMIT}" -o /out/qpchat . \
 && mkdir -m 0700 /out/data

FROM scratch
COPY --from=build /out/qpchat /qpchat
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV HOME=/data QPCHAT_DATA=/data QPCHAT_LISTEN=:7000 QPCHAT_ADMIN_LISTEN=127.0.0.1:9090
EXPOSE 7000/udp
# The binary checks itself: `serve health` asks the admin listener's /readyz
# (same QPCHAT_ADMIN_LISTEN), so the image needs no shell or curl.
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 CMD ["/qpchat", "serve", "health"]
VOLUME /data
ENTRYPOINT ["/qpchat"]
CMD ["serve"]

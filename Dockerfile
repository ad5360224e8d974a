# syntax=docker/dockerfile:1
# A static binary on distroless: no shell, no git, no package manager, and a
# non-root user. Build, stamping the version --version prints and the
# ApplySet parent records:
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) -t registry.example.com/cronsync:v1 .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.buildVersion=${VERSION}" -o /out/cronsync .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/cronsync /cronsync
USER 65532:65532
ENTRYPOINT ["/cronsync"]

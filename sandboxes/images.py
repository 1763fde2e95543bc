"""Build the template images for the ``docker`` provider from the Dockerfiles in the repo.

Everything is built locally ``FROM mcpgw-sandbox-base:bookworm`` (see
``scripts/docker-base-image.sh``): no image registry is involved.
"""

from __future__ import annotations

from dataclasses import dataclass

import docker
import docker.errors

from sandboxes.templates import dockerfile_dir, image_tag

BASE_IMAGE = "mcpgw-sandbox-base:bookworm"


class ImageBuildError(Exception):
    """The image could not be built; the message says why and what to do."""


@dataclass
class Built:
    tag: str
    image_id: str
    log: list[str]


def build_template_image(template: str, *, base: str = BASE_IMAGE) -> Built:
    """Build ``mcpgw-sandbox-<template>:latest`` (blocking; minutes on a first build)."""
    folder = dockerfile_dir(template)
    if folder is None:
        raise ImageBuildError(f"no Dockerfile for template {template!r} in sandboxes/images/")
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:
        raise ImageBuildError(
            "a Docker engine is needed: apt-get install -y docker.io && "
            f"(dockerd >/var/log/dockerd.log 2>&1 &) ({exc})"
        ) from exc
    try:
        client.images.get(base)
    except docker.errors.ImageNotFound as exc:
        raise ImageBuildError(
            f"the base image {base} is missing: run scripts/docker-base-image.sh "
            "(needs debootstrap and the Debian package mirror)"
        ) from exc
    tag = image_tag(template)
    lines: list[str] = []
    try:
        image, output = client.images.build(
            path=str(folder), tag=tag, buildargs={"BASE": base}, rm=True, forcerm=True
        )
    except docker.errors.BuildError as exc:
        text = "".join(str(c.get("stream", "")) for c in exc.build_log if isinstance(c, dict))
        hint = (
            " (installing Node.js needs the Debian package mirror from inside the build)"
            if template in ("node", "multi")
            else ""
        )
        raise ImageBuildError(f"building {tag} failed{hint}: {exc.msg}\n{text[-2000:]}") from exc
    for chunk in output:
        if isinstance(chunk, dict) and chunk.get("stream"):
            lines.append(str(chunk["stream"]).rstrip())
    return Built(tag=tag, image_id=str(image.id), log=lines)

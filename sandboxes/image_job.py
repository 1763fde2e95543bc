"""The ``sandbox.image`` job: a package list becomes a hardened image that the
``docker`` provider runs, registered as an admin template.

Runs on a jobs worker: the Dockerfile (image_recipe.py) is built by the Docker engine,
each line of the build log streams as a ``log`` event, the Dockerfile itself is an
``artifact`` event, and the finished image is checked (non-root, no setuid program)
before its template is stored. Cancelling the job stops the build: closing the
engine's build stream makes the engine abandon it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import tarfile
import threading
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.auth.principal import Principal
from gateway.errors import Conflict, Forbidden, InvalidInput
from gateway.jobs.kinds import JobContext, JobKind
from gateway.jobs.models import Job
from gateway.jobs.service import JobService
from sandboxes.image_recipe import (
    BUILD_CA,
    MANIFEST,
    Recipe,
    dockerfile,
    parse_packages,
    pinned,
)
from sandboxes.images import BASE_IMAGE, ImageBuildError
from sandboxes.models import SandboxTemplate
from sandboxes.repository import SandboxRepository
from sandboxes.schemas import NAME_PATTERN

KIND_NAME = "sandbox.image"
_END = object()


class ImageInput(BaseModel):
    """What ``POST /api/v1/sandboxes/images/generate`` takes (one of packages/description)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="The template the image becomes.")
    packages: list[str] | None = Field(
        None, max_length=100, description="Debian packages, pip:name==x.y, npm:name@x.y.z"
    )
    description: str | None = Field(
        None, min_length=10, max_length=2000, description="What the image is for (model path)."
    )
    template_description: str = Field("", max_length=2000)

    @model_validator(mode="after")
    def _one_source(self) -> ImageInput:
        if (self.packages is None) == (self.description is None):
            raise ValueError("give either packages or a description")
        if self.packages is not None:
            try:  # the same check the job runs: refuse early
                parse_packages(self.packages)
            except InvalidInput as exc:
                raise ValueError(exc.message) from exc
        return self


async def generate_image(ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
    """The handler of :data:`IMAGE_KIND`."""
    name = str(data["name"])
    recipe = parse_packages(list(data["packages"] or []))
    ca_file = ctx.settings.image_build_ca_file
    ca = await asyncio.to_thread(ca_file.read_bytes) if ca_file is not None else None
    text = dockerfile(recipe, name, build_ca=ca is not None)
    await ctx.emit("artifact", {"name": "Dockerfile", "content": text})
    tag = f"mcpgw-sandbox-gen-{name}:{ctx.job_id[:12].lower()}"
    await ctx.progress(0.05, f"building {tag}")
    image_id = await _build(ctx, _context(text, ca), tag)
    await ctx.progress(0.9, "checking the image")
    manifest = await asyncio.to_thread(_check_image, tag)
    versions = pinned(manifest, recipe)
    await ctx.emit("artifact", {"name": "packages", "content": versions})
    description = str(data.get("template_description") or "") or _describe(versions)
    await _register(ctx, name, tag, recipe, description)
    return {
        "template": name,
        "image": tag,
        "image_id": image_id,
        "packages": versions,
        "languages": recipe.languages,
    }


def _describe(versions: list[str]) -> str:
    text = "Generated image: " + ", ".join(versions)
    return text if len(text) <= 2000 else text[:1999] + "…"


def _context(text: str, ca: bytes | None) -> bytes:
    """The build context: the Dockerfile, and the CA bundle when one is configured."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, content in (("Dockerfile", text.encode()), (BUILD_CA, ca)):
            if content is not None:
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(content), 0o644
                tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


async def _build(ctx: JobContext, context: bytes, tag: str) -> str:
    """Build ``context`` as ``tag``, streaming the log; the image id."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[Any] = asyncio.Queue()
    stop = threading.Event()

    def put(item: Any) -> None:
        loop.call_soon_threadsafe(lines.put_nowait, item)

    worker = asyncio.ensure_future(asyncio.to_thread(_build_blocking, context, tag, put, stop))
    try:
        while True:
            item = await lines.get()
            if item is _END:
                break
            await ctx.log(str(item))
        return await worker
    finally:
        # Cancelled (or the log could not be written): the job ends now; the build
        # thread closes the engine's stream at its next line and the engine abandons
        # the build (a silent step can take a while: nobody waits for it).
        stop.set()


def _build_blocking(context: bytes, tag: str, put: Any, stop: threading.Event) -> str:
    client = _engine()
    stream = client.api.build(
        fileobj=io.BytesIO(context),
        custom_context=True,
        tag=tag,
        buildargs={"BASE": BASE_IMAGE},
        rm=True,
        forcerm=True,
        pull=False,
        decode=True,
        labels={"org.mcpgw.generated": "sandbox-image"},
    )
    image_id = ""
    try:
        for chunk in stream:
            if stop.is_set():
                raise ImageBuildError("the build was stopped")
            if "error" in chunk:
                raise ImageBuildError(f"building {tag} failed: {str(chunk['error']).strip()}")
            line = str(chunk.get("stream") or "").rstrip()
            if line:
                put(line)
            aux = chunk.get("aux")
            if isinstance(aux, dict) and aux.get("ID"):
                image_id = str(aux["ID"])
    finally:
        with contextlib.suppress(Exception):
            stream.close()
        put(_END)
    if not image_id:
        image_id = str(client.images.get(tag).id)
    return image_id


def _engine() -> Any:
    import docker

    try:
        client = docker.from_env()
        client.ping()
        client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound as exc:
        raise ImageBuildError(
            f"the base image {BASE_IMAGE} is missing: run scripts/docker-base-image.sh"
        ) from exc
    except Exception as exc:
        raise ImageBuildError(
            "a Docker engine is needed to build images: apt-get install -y docker.io && "
            f"(dockerd >/var/log/dockerd.log 2>&1 &) ({type(exc).__name__})"
        ) from exc
    return client


def _check_image(tag: str) -> str:
    """Run the new image once, as the provider would (no network, no capabilities):
    it must run as uid 1000 and hold no setuid/setgid program; its package manifest."""
    client = _engine()
    find = "find / -xdev -perm /6000 -type f 2>/dev/null | head -5"
    script = f"id -u; {find}; echo ---; cat {MANIFEST}"
    out = client.containers.run(
        tag, ["sh", "-c", script], network_mode="none", cap_drop=["ALL"], read_only=True,
        remove=True, stdout=True, stderr=True,
    )  # fmt: skip
    text = bytes(out).decode(errors="replace")
    head, _, manifest = text.partition("---\n")
    uid, *setuid = head.split()
    if uid != "1000" or setuid:
        raise ImageBuildError(f"the image is not hardened: uid {uid}, setuid programs {setuid}")
    return manifest


async def _register(ctx: JobContext, name: str, tag: str, recipe: Recipe, description: str) -> None:
    """Store (or replace) the admin template ``name`` pointing at the new image. The
    submitter was checked to be an admin when the job was accepted."""
    async with ctx.db.session() as session:
        repo = SandboxRepository(session)
        row = await repo.template(name)
        if row is None:
            row = SandboxTemplate(name=name, created_by=ctx.owner_id, env={}, limits={})
            session.add(row)
        row.image, row.description = tag, description
        row.languages = recipe.languages


IMAGE_KIND = JobKind(
    KIND_NAME,
    generate_image,
    ImageInput,
    queue="jobs",
    soft_time_limit=1800,
    hard_time_limit=1860,
)


class ModelNotConfigured(Conflict):
    """A model path was asked for, but no model endpoint is configured."""

    code = "model_not_configured"


async def request_image(jobs: JobService, principal: Principal, body: ImageInput) -> Job:
    """Accept an image generation for ``principal`` (admins only: the image becomes a
    template every user may start sandboxes from)."""
    if not principal.is_admin:
        raise Forbidden("only admins may generate sandbox images")
    if body.description is not None:
        raise ModelNotConfigured(
            "generating an image from a description needs a model: set MCPGW_LLM_BASE_URL "
            "and MCPGW_LLM_MODEL (and MCPGW_LLM_API_KEY), or give a package list instead"
        )
    return await jobs.submit(principal, KIND_NAME, body.model_dump(mode="json"))

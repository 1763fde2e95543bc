"""Essentials: documents — deterministic HTML, PDF and DOCX from structured input.

The same input always gives byte-identical output (fixed timestamps and metadata),
so documents can be cached, diffed and checked by digest. Output comes back as
base64 with its MIME type, size and SHA-256.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import zipfile
from datetime import UTC, datetime
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

server = MCPServer(
    "documents",
    instructions="Render a structured document (title, sections with paragraphs, bullets "
    "and tables) to HTML, PDF or DOCX. Same input, same bytes.",
)

READ_ONLY = ToolAnnotations(readOnlyHint=True, idempotentHint=True, openWorldHint=False)
FIXED_TIME = datetime(2000, 1, 1, tzinfo=UTC)
MAX_OUTPUT = 20 * 1024 * 1024


class Table(BaseModel):
    columns: list[str] = Field(min_length=1, max_length=50)
    rows: list[list[str | int | float | None]] = Field(default_factory=list, max_length=5000)


class Section(BaseModel):
    heading: str | None = Field(None, max_length=500)
    paragraphs: list[str] = Field(default_factory=list, max_length=500)
    bullets: list[str] = Field(default_factory=list, max_length=500)
    table: Table | None = None


class Document(BaseModel):
    title: str = Field(min_length=1, max_length=500)
    author: str | None = Field(None, max_length=200)
    sections: list[Section] = Field(default_factory=list, max_length=500)


DocumentArg = Annotated[
    Document,
    Field(
        description="{title, author?, sections: [{heading?, "
        "paragraphs?, bullets?, table?: {columns, rows}}]}"
    ),
]


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def _packaged(data: bytes, mime: str, filename: str) -> dict[str, Any]:
    if len(data) > MAX_OUTPUT:
        raise ToolError(f"document larger than {MAX_OUTPUT} bytes")
    return {
        "filename": filename,
        "mime_type": mime,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "base64": base64.b64encode(data).decode(),
    }


def _slug(title: str) -> str:
    slug = "".join(c.lower() if c.isalnum() else "-" for c in title).strip("-")
    return "-".join(filter(None, slug.split("-")))[:60] or "document"


def render_html(doc: Document) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(doc.title)}</title>",
        *([f'<meta name="author" content="{e(doc.author)}">'] if doc.author else []),
        "<style>body{font-family:sans-serif;max-width:50em;margin:2em auto;line-height:1.5}"
        "table{border-collapse:collapse}td,th{border:1px solid #999;padding:.3em .6em}</style>",
        "</head><body>",
        f"<h1>{e(doc.title)}</h1>",
    ]
    for section in doc.sections:
        if section.heading:
            parts.append(f"<h2>{e(section.heading)}</h2>")
        parts += [f"<p>{e(p)}</p>" for p in section.paragraphs]
        if section.bullets:
            parts.append("<ul>" + "".join(f"<li>{e(b)}</li>" for b in section.bullets) + "</ul>")
        if section.table:
            head = "".join(f"<th>{e(c)}</th>" for c in section.table.columns)
            body = "".join(
                "<tr>" + "".join(f"<td>{e(_cell(v))}</td>" for v in row) + "</tr>"
                for row in section.table.rows
            )
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _latin1(text: str) -> str:
    # The PDF core fonts cover Latin-1; anything else is shown as '?'.
    return text.encode("latin-1", "replace").decode("latin-1")


def render_pdf(doc: Document) -> bytes:
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_creation_date(FIXED_TIME)
    pdf.set_producer("mcp-gateway documents")
    pdf.set_title(_latin1(doc.title))
    if doc.author:
        pdf.set_author(_latin1(doc.author))
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 18)
    pdf.multi_cell(0, 10, _latin1(doc.title), new_x="LMARGIN", new_y="NEXT")
    for section in doc.sections:
        if section.heading:
            pdf.ln(2)
            pdf.set_font("Helvetica", "B", 14)
            pdf.multi_cell(0, 8, _latin1(section.heading), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 11)
        for paragraph in section.paragraphs:
            pdf.multi_cell(0, 6, _latin1(paragraph), new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1)
        for bullet in section.bullets:
            pdf.multi_cell(0, 6, _latin1(f"- {bullet}"), new_x="LMARGIN", new_y="NEXT")
        if section.table:
            pdf.ln(1)
            with pdf.table() as table:
                rows: list[list[Any]] = [list(section.table.columns), *section.table.rows]
                for row in rows:
                    cells = table.row()
                    for value in row:
                        cells.cell(_latin1(_cell(value)))
    return bytes(pdf.output())


def _normalise_zip(data: bytes) -> bytes:
    """Rewrite a zip with fixed timestamps so identical content gives identical bytes."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o644 << 16
            target.writestr(fixed, source.read(info.filename))
    return out.getvalue()


def render_docx(doc: Document) -> bytes:
    import docx

    document = docx.Document()
    props = document.core_properties
    props.title = doc.title
    props.author = doc.author or ""
    props.last_modified_by = doc.author or ""
    props.created = props.modified = FIXED_TIME.replace(tzinfo=None)
    props.revision = 1
    document.add_heading(doc.title, level=0)
    for section in doc.sections:
        if section.heading:
            document.add_heading(section.heading, level=1)
        for paragraph in section.paragraphs:
            document.add_paragraph(paragraph)
        for bullet in section.bullets:
            document.add_paragraph(bullet, style="List Bullet")
        if section.table:
            table = document.add_table(rows=1, cols=len(section.table.columns))
            table.style = "Table Grid"
            header_cells = list(table.rows[0].cells)
            for cell, name in zip(header_cells, section.table.columns, strict=False):
                cell.text = name
            for row in section.table.rows:
                cells = table.add_row().cells
                for cell, value in zip(cells, row, strict=False):
                    cell.text = _cell(value)
    buffer = io.BytesIO()
    document.save(buffer)
    return _normalise_zip(buffer.getvalue())


@server.tool(name="html", annotations=READ_ONLY)
def html_document(document: DocumentArg) -> dict[str, Any]:
    """Render the document as a standalone HTML page."""
    return _packaged(render_html(document).encode(), "text/html", f"{_slug(document.title)}.html")


@server.tool(name="pdf", annotations=READ_ONLY)
def pdf_document(document: DocumentArg) -> dict[str, Any]:
    """Render the document as an A4 PDF (Latin-1 text; other characters show as '?')."""
    return _packaged(render_pdf(document), "application/pdf", f"{_slug(document.title)}.pdf")


@server.tool(name="docx", annotations=READ_ONLY)
def docx_document(document: DocumentArg) -> dict[str, Any]:
    """Render the document as a Word (.docx) file."""
    mime = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    return _packaged(render_docx(document), mime, f"{_slug(document.title)}.docx")

import base64
import io
import zipfile

from gateway.servers.essentials.documents import (
    Document,
    docx_document,
    html_document,
    pdf_document,
)

DOC = Document.model_validate(
    {
        "title": "Quarterly <Report> & Notes",
        "author": "Ada",
        "sections": [
            {
                "heading": "Summary",
                "paragraphs": ["Revenue grew 12%.", "Costs fell; café prices rose."],
                "bullets": ["North", "South"],
                "table": {
                    "columns": ["Region", "Revenue"],
                    "rows": [["North", 120], ["South", None]],
                },
            }
        ],
    }
)


def test_html_is_escaped_and_deterministic() -> None:
    first, second = html_document(DOC), html_document(DOC)
    assert first == second
    text = base64.b64decode(first["base64"]).decode()
    assert "<h1>Quarterly &lt;Report&gt; &amp; Notes</h1>" in text
    assert "<td>North</td><td>120</td>" in text
    assert first["mime_type"] == "text/html"
    assert first["filename"] == "quarterly-report-notes.html"


def test_pdf_is_a_pdf_and_byte_identical_across_calls() -> None:
    first, second = pdf_document(DOC), pdf_document(DOC)
    assert first["sha256"] == second["sha256"]
    data = base64.b64decode(first["base64"])
    assert data.startswith(b"%PDF-") and first["size"] == len(data)


def test_docx_is_a_word_file_and_byte_identical_across_calls() -> None:
    first, second = docx_document(DOC), docx_document(DOC)
    assert first["sha256"] == second["sha256"]
    archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(first["base64"])))
    body = archive.read("word/document.xml").decode()
    assert "Revenue grew 12%." in body and "café" in body
    assert "Ada" in archive.read("docProps/core.xml").decode()


def test_different_input_gives_different_bytes() -> None:
    other = DOC.model_copy(update={"title": "Another"})
    assert pdf_document(DOC)["sha256"] != pdf_document(other)["sha256"]

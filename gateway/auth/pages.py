"""The few server-rendered pages of signing in: the sign-in page, the OAuth consent
page and error pages. Plain HTML (the portal brings its own UI); every value is
escaped, and the pages refuse to be framed (clickjacking of the consent button)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from urllib.parse import quote, urlsplit

from starlette.responses import HTMLResponse

from gateway.auth.oauth.service import PendingAuthorization

HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    # No form-action: the consent form's answer is redirected to the client's own
    # address, which may be a native app's scheme (vscode://, cursor://).
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#1a1a1a}
h1{font-size:1.4rem}label{display:block;margin:.8rem 0 .3rem}
input[type=password]{width:100%;padding:.5rem;font-size:1rem;box-sizing:border-box}
button,.provider{display:inline-block;padding:.55rem 1.1rem;margin:.8rem .5rem 0 0;font-size:1rem;
border-radius:.3rem;border:1px solid #555;background:#fff;color:#1a1a1a;text-decoration:none}
button.primary{background:#1d4ed8;color:#fff;border-color:#1d4ed8}
.error{color:#b91c1c}.muted{color:#555;font-size:.9rem}ul{padding-left:1.2rem}
"""


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    """A page of ours with the headers every sign-in page carries."""
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} · MCP Gateway</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def sign_in_page(
    next_path: str, providers: Sequence[tuple[str, str]], error: str | None = None
) -> HTMLResponse:
    """Sign in with an identity provider (``(name, label)`` pairs) or an API key."""
    after = escape(quote(next_path, safe="/"))
    links = "".join(
        f'<a class="provider" href="/auth/login/{escape(name)}?next={after}">'
        f"Sign in with {escape(label)}</a>"
        for name, label in providers
    )
    problem = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    body = (
        "<h1>Sign in to MCP Gateway</h1>"
        f"{problem}{links}"
        '<form method="post" action="/auth/signin">'
        f'<input type="hidden" name="next" value="{escape(next_path)}">'
        '<label for="api_key">API key</label>'
        '<input type="password" id="api_key" name="api_key" autocomplete="off" required>'
        '<button class="primary" type="submit">Sign in</button></form>'
    )
    return page("Sign in", body, 401 if error else 200)


def consent_page(pending: PendingAuthorization, email: str, csrf: str) -> HTMLResponse:
    """Ask the signed-in user whether the client may act for them."""
    where = urlsplit(pending.redirect_uri).netloc or pending.redirect_uri
    scopes = "".join(f"<li><code>{escape(s)}</code></li>" for s in pending.scopes)
    body = (
        f"<h1>Allow {escape(pending.client_name)}?</h1>"
        f"<p><strong>{escape(pending.client_name)}</strong> wants to use MCP Gateway "
        f"as <strong>{escape(email)}</strong>, at <code>{escape(pending.resource)}</code>, "
        "with:</p>"
        f"<ul>{scopes}</ul>"
        f'<p class="muted">You will be sent back to <code>{escape(where)}</code>. What you may do '
        "stays limited by your role.</p>"
        '<form method="post" action="/oauth/consent">'
        f'<input type="hidden" name="request" value="{escape(pending.id)}">'
        f'<input type="hidden" name="csrf_token" value="{escape(csrf)}">'
        '<button class="primary" type="submit" name="decision" value="allow">Allow</button>'
        '<button type="submit" name="decision" value="deny">Deny</button></form>'
    )
    return page("Allow access", body)


def message_page(title: str, message: str, status: int) -> HTMLResponse:
    """An error or notice, in words (never a stack trace)."""
    return page(title, f"<h1>{escape(title)}</h1><p>{escape(message)}</p>", status)

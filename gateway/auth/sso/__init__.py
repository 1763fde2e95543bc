"""Signing people in with an identity provider (OpenID Connect, or OAuth 2.0 + an API
for GitHub): authorization code + PKCE, state and nonce checked, the person mapped to
a user with a role and teams, a browser session started."""

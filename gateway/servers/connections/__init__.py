"""Per-user credentials for backends (issue 18's token vault): a server declares that
each user brings their own credential; users connect (OAuth or a static secret); calls
to that server go on a backend session keyed by (server, the caller's connection)."""

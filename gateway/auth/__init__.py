"""Identity core: users, teams, roles, API keys, and the request principal."""

"""Local stand-ins for services that cannot run on the test machine (see TESTING.md)."""

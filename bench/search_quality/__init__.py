"""Tool search quality benchmark: real tools, real requests (see README.md)."""

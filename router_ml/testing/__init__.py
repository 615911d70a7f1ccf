"""Test helpers that ship with the package: the loopback stub LLM server (tests, demo, load test)."""

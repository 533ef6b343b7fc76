"""The muxgate benchmark harness (see bench/README.md)."""

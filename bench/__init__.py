"""The measuring harness: cereal's scenarios and the peers', in one run (see bench/README.md)."""

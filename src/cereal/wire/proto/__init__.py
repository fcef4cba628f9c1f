"""``cereal_v1.proto`` and the modules generated from it (``python -m cereal.wire.codegen``)."""

"""Measurement: parameter counts, the FLOP model, timing primitives and int8 quantization."""

"""Compile time: parse, analyse and instrument training scripts (LibCST)."""

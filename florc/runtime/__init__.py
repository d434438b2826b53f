"""Run time: what the instrumented script calls while it records or replays (no libcst here)."""

"""`ray job submit --working-dir . -- python -m jobs.<stage> --config CONFIG` entrypoints."""

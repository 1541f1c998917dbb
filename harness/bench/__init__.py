"""`make bench` and `make gpu-check`: is the harness ever the bottleneck, and do FLOPs savings
become time savings? `python -m harness.bench` runs every figure."""

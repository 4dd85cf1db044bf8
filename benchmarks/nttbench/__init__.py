"""The parts of benchmarks/bench.py (see its docstring): scratch namespaces, the tools it
times, the scenarios, the targets and the report."""

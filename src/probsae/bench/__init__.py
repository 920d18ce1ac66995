"""``probsae bench``: SAEBench-style evaluation of trained runs (docs/BENCH.md)."""

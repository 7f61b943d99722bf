//! Benchmarks with baselines measured in the same run; each prints machine-readable JSON.

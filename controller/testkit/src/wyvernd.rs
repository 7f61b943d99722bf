//! wyvernd harness: a real wyvernd process with its own data dir and ports.

//! The wyvernd per-host daemon and the wyvern CLI: configuration and wiring.

//! Neutron v2.0-compatible REST API and the northbound service that turns requests into store transactions.

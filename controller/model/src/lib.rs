//! Logical topology (Neutron subset): types, validation, IPAM and Neutron JSON shapes; pure, no I/O.

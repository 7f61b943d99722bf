//! RFC 7047 OVSDB client: creates br-int, monitors interfaces and binds logical ports to ofports.

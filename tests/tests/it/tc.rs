//! TC behaviour over TCP.

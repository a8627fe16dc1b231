//! Several TCs on one MySQL store.

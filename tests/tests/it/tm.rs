//! TM client against the real TC.

//! File store: kill -9 and restart on the same data directory.

//! Opens the store the configuration names. Each store adds its arm here.

use std::sync::Arc;

use super::{MemoryStore, SessionStore, StoreError};
use crate::config::{StoreMode, TcConfig};

/// Opens (and for durable stores, recovers the files or tables of) the configured store.
pub async fn open_store(config: &TcConfig) -> Result<Arc<dyn SessionStore>, StoreError> {
    match config.store {
        StoreMode::Memory => Ok(Arc::new(MemoryStore)),
        StoreMode::File => Err(StoreError::Backend(
            "the file store is not built yet; use --store memory".into(),
        )),
        StoreMode::Db => Err(StoreError::Backend(
            "the db store is not built yet; use --store memory".into(),
        )),
    }
}

//! Opens the store the configuration names. Each store adds its arm here.

use std::sync::Arc;

use super::{MemoryStore, SessionStore, StoreError};
use crate::config::{StoreMode, TcConfig};

/// Opens (and for durable stores, recovers the files or tables of) the configured store.
pub async fn open_store(config: &TcConfig) -> Result<Arc<dyn SessionStore>, StoreError> {
    match config.store {
        StoreMode::Memory => Ok(Arc::new(MemoryStore::new())),
        StoreMode::File => Ok(Arc::new(
            super::file::FileStore::open(super::file::FileStoreOptions::from_config(config))
                .await?,
        )),
        StoreMode::Db => {
            let url = config.db_url.as_deref().unwrap_or_default();
            let store =
                super::mysql::MysqlStore::open(url, config.init_db, config.db_lease_ms).await?;
            Ok(Arc::new(store))
        }
    }
}

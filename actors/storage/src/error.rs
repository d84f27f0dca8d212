//! The storage crate's error type and its mappings to the protocol's and raft-rs's errors.

use std::sync::Arc;

/// Why a storage operation failed.
///
/// Cloneable so one failed fsync round can answer every request that waited on it.
#[non_exhaustive]
#[derive(thiserror::Error, Debug, Clone)]
pub enum StorageError {
    /// fjall reported an I/O or format error.
    #[error("fjall: {0}")]
    Fjall(Arc<fjall::Error>),
    /// An earlier write or fsync failed and fjall refuses every later write: the process must stop
    /// and recover from disk, never retry (<https://www.usenix.org/system/files/atc20-rebello.pdf>).
    #[error("storage is poisoned by an earlier failed write: stop, do not retry")]
    Poisoned,
    /// Stored bytes do not decode, or the stored structure breaks an invariant (a gap in the log,
    /// an index row pointing at a missing entry, a record count that does not match).
    #[error("corrupt storage: {0}")]
    Corrupt(String),
    /// The writer thread is gone (the store is shutting down or the thread panicked).
    #[error("storage writer is closed")]
    Closed,
    /// A value could not be encoded (a programmer error: our types always encode).
    #[error("encode: {0}")]
    Encode(String),
}

impl From<fjall::Error> for StorageError {
    fn from(e: fjall::Error) -> Self {
        match e {
            fjall::Error::Poisoned => StorageError::Poisoned,
            e => StorageError::Fjall(Arc::new(e)),
        }
    }
}

impl From<StorageError> for daftka_types::Error {
    fn from(e: StorageError) -> Self {
        match e {
            // The replica is stopping or restarting: another attempt (maybe on another replica) can work.
            StorageError::Closed => daftka_types::Error::unavailable(e.to_string()),
            _ => daftka_types::Error::internal(e.to_string()),
        }
    }
}

impl From<StorageError> for raft::Error {
    fn from(e: StorageError) -> Self {
        raft::Error::Store(raft::StorageError::Other(Box::new(e)))
    }
}

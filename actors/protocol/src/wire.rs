//! [`Wire`]: a typed value carried across ractor_cluster as postcard bytes.
//!
//! ractor_cluster needs every field of a remote message to be `BytesConvertable`, whose
//! `from_bytes` cannot fail. A `Wire<T>` decodes into a `Result`: bytes from a peer that do not
//! decode become an `Err` value for the receiver to answer, never a panic in an actor.

use ractor::BytesConvertable;
use serde::{de::DeserializeOwned, Serialize};

use crate::error::Error;

/// A value, or the error that stands in for it (a failed request, or bytes that did not decode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wire<T>(pub Result<T, Error>);

impl<T> Wire<T> {
    pub fn ok(value: T) -> Self {
        Wire(Ok(value))
    }
    pub fn into_result(self) -> Result<T, Error> {
        self.0
    }
}

impl<T> From<Result<T, Error>> for Wire<T> {
    fn from(r: Result<T, Error>) -> Self {
        Wire(r)
    }
}

impl<T: Serialize + DeserializeOwned> BytesConvertable for Wire<T> {
    fn into_bytes(self) -> Vec<u8> {
        match postcard::to_allocvec(&self.0) {
            Ok(b) => b,
            // Encoding our own types does not fail; if it ever does, the peer gets an error value.
            Err(e) => postcard::to_allocvec(&Err::<T, Error>(Error::internal(format!(
                "encode a cluster message: {e}"
            ))))
            .unwrap_or_default(),
        }
    }

    fn from_bytes(bytes: Vec<u8>) -> Self {
        match postcard::from_bytes(&bytes) {
            Ok(r) => Wire(r),
            Err(e) => Wire(Err(Error::internal(format!(
                "a cluster message did not decode: {e}"
            )))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values and errors round-trip; garbage becomes an error value, not a panic.
    #[test]
    fn wire_round_trips_and_rejects_garbage() {
        let w = Wire::ok(vec![1u64, 2, 3]);
        assert_eq!(Wire::<Vec<u64>>::from_bytes(w.clone().into_bytes()), w);
        let e: Wire<u64> = Wire(Err(Error::unavailable("x")));
        assert_eq!(Wire::<u64>::from_bytes(e.clone().into_bytes()), e);
        let bad = Wire::<String>::from_bytes(vec![0xff, 0xff, 0xff]);
        assert!(bad.0.is_err());
        let empty = Wire::<u64>::from_bytes(Vec::new());
        assert!(empty.0.is_err());
    }
}

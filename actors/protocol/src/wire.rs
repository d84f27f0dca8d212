//! [`Wire`]: a typed value carried across ractor_cluster as postcard bytes.
//!
//! ractor_cluster needs every field of a remote message to be `BytesConvertable`, whose
//! `from_bytes` cannot fail. A `Wire<T>` decodes into a `Result`: bytes from a peer that do not
//! decode become an `Err` value for the receiver to answer, never a panic in an actor.
//!
//! [`Framed`] is the same on the wire; decoding it shares the received frame's memory for the
//! record bytes instead of copying each key and value out of it (produce requests).

use bytes::Bytes;
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

/// postcard of `value`; encoding our own types does not fail, and if it ever does, the peer
/// gets an error value.
fn encode<T: Serialize>(value: &Result<T, Error>) -> Vec<u8> {
    match postcard::to_allocvec(value) {
        Ok(b) => b,
        Err(e) => postcard::to_allocvec(&Err::<T, Error>(Error::internal(format!(
            "encode a cluster message: {e}"
        ))))
        .unwrap_or_default(),
    }
}

/// The value of bytes that did not decode.
fn undecodable<T>(e: postcard::Error) -> Result<T, Error> {
    Err(Error::internal(format!(
        "a cluster message did not decode: {e}"
    )))
}

impl<T: Serialize + DeserializeOwned> BytesConvertable for Wire<T> {
    fn into_bytes(self) -> Vec<u8> {
        encode(&self.0)
    }

    fn from_bytes(bytes: Vec<u8>) -> Self {
        Wire(postcard::from_bytes(&bytes).unwrap_or_else(undecodable))
    }
}

/// A value whose byte fields, once decoded from a frame, are slices of that frame.
pub trait FromFrame: Serialize + Sized {
    /// Decodes `frame` (postcard of `Result<Self, Error>`), sharing its memory.
    fn from_frame(frame: &Bytes) -> Result<Result<Self, Error>, postcard::Error>;
}

/// [`FromFrame::from_frame`] for a list: decodes `frame` as a list of borrowed views `R`, then
/// makes each one a `T` sharing `frame` (`share` slices the frame, as [`Bytes::slice_ref`] does).
pub(crate) fn share_each<'a, R: serde::Deserialize<'a>, T>(
    frame: &'a Bytes,
    share: impl Fn(R, &Bytes) -> T,
) -> Result<Result<Vec<T>, Error>, postcard::Error> {
    let decoded: Result<Vec<R>, Error> = postcard::from_bytes(frame)?;
    Ok(decoded.map(|views| views.into_iter().map(|v| share(v, frame)).collect()))
}

impl FromFrame for Vec<crate::Record> {
    fn from_frame(frame: &Bytes) -> Result<Result<Self, Error>, postcard::Error> {
        share_each(frame, crate::record::RecordRef::share)
    }
}

/// A [`Wire`] for values with many byte fields, such as the records of a produce: the same bytes
/// across the cluster, but decoding allocates nothing per record. The frame ractor_cluster hands
/// over is kept whole, and each key, value and header value is a [`Bytes`] slice of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framed<T>(pub Result<T, Error>);

impl<T> Framed<T> {
    pub fn ok(value: T) -> Self {
        Framed(Ok(value))
    }
    pub fn into_result(self) -> Result<T, Error> {
        self.0
    }
}

impl<T: FromFrame> BytesConvertable for Framed<T> {
    fn into_bytes(self) -> Vec<u8> {
        encode(&self.0)
    }

    fn from_bytes(bytes: Vec<u8>) -> Self {
        Framed(T::from_frame(&Bytes::from(bytes)).unwrap_or_else(undecodable))
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

//! Request limits that hold on every path into a node (HTTP and native): the Router applies
//! [`check_produce`] and [`check_commit`] to each request. Over a size or count limit is
//! `payload_too_large`, like the HTTP gateway's 413.

use daftka_types::{Error, Record};

use crate::config::LimitsConfig;

/// Checks a produce request's record count and every record's key, value and header sizes.
pub fn check_produce<'a>(
    records: impl ExactSizeIterator<Item = &'a Record>,
    limits: &LimitsConfig,
) -> Result<(), Error> {
    let n = records.len();
    if n as u64 > u64::from(limits.records_per_request_max) {
        return Err(Error::too_large(format!(
            "{n} records in one request; limits.records_per_request_max is {}",
            limits.records_per_request_max
        )));
    }
    for (i, r) in records.enumerate() {
        let key = r.key.as_ref().map_or(0, |k| k.len()) as u64;
        if key > limits.key_bytes_max {
            return Err(Error::too_large(format!(
                "record {i}: key of {key} bytes; limits.key_bytes_max is {}",
                limits.key_bytes_max
            )));
        }
        let value = r.value.len() as u64;
        if value > limits.value_bytes_max {
            return Err(Error::too_large(format!(
                "record {i}: value of {value} bytes; limits.value_bytes_max is {}",
                limits.value_bytes_max
            )));
        }
        if r.headers.len() as u64 > u64::from(limits.headers_per_record_max) {
            return Err(Error::too_large(format!(
                "record {i}: {} headers; limits.headers_per_record_max is {}",
                r.headers.len(),
                limits.headers_per_record_max
            )));
        }
        for h in &r.headers {
            let size = (h.key.len() + h.value.len()) as u64;
            if size > limits.header_bytes_max {
                return Err(Error::too_large(format!(
                    "record {i}: header {:?} of {size} bytes; limits.header_bytes_max is {}",
                    h.key, limits.header_bytes_max
                )));
            }
        }
    }
    Ok(())
}

/// Checks the number of offsets in one group commit.
pub fn check_commit(offsets: usize, limits: &LimitsConfig) -> Result<(), Error> {
    if offsets as u64 > u64::from(limits.offsets_per_commit_max) {
        return Err(Error::too_large(format!(
            "{offsets} offsets in one commit; limits.offsets_per_commit_max is {}",
            limits.offsets_per_commit_max
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use daftka_types::{ErrorCode, Header};

    /// Each limit accepts its exact value and refuses one more, naming the config key.
    #[test]
    fn limits_are_inclusive_and_named() {
        let l = LimitsConfig {
            records_per_request_max: 2,
            key_bytes_max: 3,
            value_bytes_max: 4,
            headers_per_record_max: 1,
            header_bytes_max: 5,
            offsets_per_commit_max: 2,
            ..LimitsConfig::default()
        };
        let ok = Record {
            key: Some("abc".into()),
            value: "abcd".into(),
            headers: vec![Header {
                key: "h".into(),
                value: "1234".into(),
            }],
            timestamp_ms: None,
        };
        assert_eq!(check_produce([ok.clone(), ok.clone()].iter(), &l), Ok(()));
        let refused = |r: Record, key: &str| {
            let e = check_produce([r].iter(), &l).expect_err("refused");
            assert_eq!(e.code, ErrorCode::PayloadTooLarge);
            assert!(e.message.contains(key), "{} names {key}", e.message);
        };
        refused(ok.clone().with_key("abcd"), "key_bytes_max");
        refused(
            Record {
                value: "abcde".into(),
                ..ok.clone()
            },
            "value_bytes_max",
        );
        let mut two = ok.clone();
        two.headers.push(two.headers[0].clone());
        refused(two, "headers_per_record_max");
        let mut big = ok.clone();
        big.headers[0].value = "12345".into();
        refused(big, "header_bytes_max");
        assert!(check_produce([ok.clone(), ok.clone(), ok].iter(), &l).is_err());
        assert_eq!(check_commit(2, &l), Ok(()));
        assert!(check_commit(3, &l).is_err());
    }
}

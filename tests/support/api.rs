//! A JSON client of one node's HTTP API for the integration tests: every answer is checked for
//! an `x-request-id` and parsed as JSON.

use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::Value;

/// One answer: status, headers and the JSON body (`Null` when the body is empty).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// Asserts the answer is the JSON error shape with this status and code.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        let e = &self.body["error"];
        assert_eq!(e["code"], code, "{self:?}");
        assert!(
            e["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{self:?}"
        );
        let retryable = matches!(code, "unavailable" | "timeout" | "not_leader");
        assert_eq!(e["retryable"], retryable, "{self:?}");
    }

    #[track_caller]
    pub fn assert_ok(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "{self:?}");
        &self.body
    }
}

/// A client of one node's HTTP API.
pub struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    pub fn new(base: String) -> Api {
        Api {
            http: reqwest::Client::new(),
            base,
        }
    }

    /// Sends a request with an optional raw body; every answer must carry an `x-request-id`.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        request_id: Option<&str>,
    ) -> Reply {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body);
        }
        if let Some(id) = request_id {
            req = req.header("x-request-id", id);
        }
        let resp = req.send().await.expect("the node answers");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("a whole body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "{path}: non-JSON body ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        let id = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(!id.is_empty(), "{path}: no x-request-id on a {status}");
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.raw(Method::GET, path, None, None).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.raw(Method::DELETE, path, None, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        let bytes = serde_json::to_vec(&body).expect("serialise");
        self.raw(Method::POST, path, Some(bytes), None).await
    }

    pub async fn post_raw(&self, path: &str, body: &[u8]) -> Reply {
        self.raw(Method::POST, path, Some(body.to_vec()), None)
            .await
    }

    pub async fn create(&self, body: Value) -> Reply {
        self.post("/v1/topics", body).await
    }

    pub async fn produce(&self, topic: &str, body: Value) -> Reply {
        self.post(&format!("/v1/topics/{topic}/records"), body)
            .await
    }

    /// Produces and returns the (partition, offset) of each record.
    pub async fn produce_ok(&self, topic: &str, body: Value) -> Vec<(u64, u64)> {
        let r = self.produce(topic, body).await;
        positions(r.assert_ok(200))
    }

    pub async fn fetch(&self, topic: &str, partition: &str, query: &str) -> Reply {
        self.get(&format!(
            "/v1/topics/{topic}/partitions/{partition}/records?{query}"
        ))
        .await
    }

    pub async fn fetch_ok(&self, topic: &str, partition: u64, query: &str) -> Value {
        self.fetch(topic, &partition.to_string(), query)
            .await
            .assert_ok(200)
            .clone()
    }
}

/// The `offsets` of a produce answer as (partition, offset) pairs.
pub fn positions(body: &Value) -> Vec<(u64, u64)> {
    body["offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .map(|p| {
            (
                p["partition"].as_u64().expect("partition"),
                p["offset"].as_u64().expect("offset"),
            )
        })
        .collect()
}

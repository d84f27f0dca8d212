//! The gateway holds at most `limits.http_connections_max` connections: one more waits in the
//! listen backlog, unserved, until an open one closes, then it is served as usual.

mod support;

use std::time::Duration;

use support::{start_node, test_config, unique_name};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `GET /healthz` on `conn` (keeping it open) and reads the status line of the answer.
async fn healthz(conn: &mut TcpStream) -> String {
    conn.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("request sent");
    let mut buf = vec![0u8; 4096];
    let n = conn.read(&mut buf).await.expect("answer read");
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    text.lines().next().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_wait_for_a_free_slot() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = test_config(&unique_name("conns"), dir.path());
    cfg.limits.http_connections_max = 2;
    let node = start_node(cfg).await;
    let addr = node.http_addr;

    let mut first = TcpStream::connect(addr).await.expect("connect");
    let mut second = TcpStream::connect(addr).await.expect("connect");
    assert_eq!(healthz(&mut first).await, "HTTP/1.1 200 OK");
    assert_eq!(healthz(&mut second).await, "HTTP/1.1 200 OK");

    // The kernel completes the third handshake, but the gateway does not take the connection.
    let mut third = TcpStream::connect(addr).await.expect("connect");
    let waiting = tokio::time::timeout(Duration::from_millis(300), healthz(&mut third)).await;
    assert!(
        waiting.is_err(),
        "a third connection was served: {waiting:?}"
    );

    // Closing one frees a slot: the third is taken and its request (already sent) answered.
    drop(first);
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), third.read(&mut buf))
        .await
        .expect("served once a slot is free")
        .expect("answer read");
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200 OK"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    // The second is still served.
    assert_eq!(healthz(&mut second).await, "HTTP/1.1 200 OK");
    node.shutdown().await;
}

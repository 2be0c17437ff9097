//! The server's connection limits: a client that never finishes its request headers is dropped
//! after `HEADER_READ_TIMEOUT`, and at most `MAX_CONNECTIONS` are served at once (the next
//! client waits until one closes).
use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::helpers::TestApp;

/// Reads until the server closes the connection (within `within`), returning what it sent.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let reading = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    };
    tokio::time::timeout(within, reading).await.ok()?;
    Some(received)
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_dropped() {
    let app = TestApp::spawn_with(|c| c.header_read_timeout = Duration::from_secs(1)).await;
    // One that says nothing, one that stops half-way through its headers.
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    let mut partial = TcpStream::connect(app.addr).await.unwrap();
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .unwrap();
    for stream in [&mut silent, &mut partial] {
        let sent = read_until_closed(stream, Duration::from_secs(10)).await;
        let sent = sent.expect("the server closed the connection");
        // hyper may say 408 before closing; it never answers the request.
        let text = String::from_utf8_lossy(&sent);
        assert!(!text.contains("200 OK"), "{text}");
    }
    // A client that does send its request is answered as ever.
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn beyond_the_connection_bound_a_client_waits_until_one_closes() {
    let app = TestApp::spawn_with(|c| {
        c.max_connections = 2;
        c.header_read_timeout = Duration::from_secs(2);
    })
    .await;
    let held: Vec<TcpStream> = vec![
        TcpStream::connect(app.addr).await.unwrap(),
        TcpStream::connect(app.addr).await.unwrap(),
    ];
    // The third connects (the kernel's backlog) but is not served while both are held.
    let mut third = TcpStream::connect(app.addr).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut first_bytes = [0u8; 64];
    let early =
        tokio::time::timeout(Duration::from_millis(500), third.read(&mut first_bytes)).await;
    assert!(early.is_err(), "answered while the bound was reached");
    // The held ones never send their headers: dropped after the timeout, which frees a slot.
    let answer = read_until_closed(&mut third, Duration::from_secs(10))
        .await
        .expect("answered once a slot was free");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(held);
}

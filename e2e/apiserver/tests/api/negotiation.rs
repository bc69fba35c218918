//! Content negotiation as a client without kube-rs sees it: raw HTTP/1.1 requests.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::fixture::server;

/// Sends one request and returns (status code, body).
async fn request(addr: std::net::SocketAddr, head: &str, body: &str) -> (u16, serde_json::Value) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let text = format!(
        "{head}\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let code = response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap();
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    (code, serde_json::from_str(body).unwrap_or_default())
}

#[tokio::test]
async fn a_protobuf_only_request_is_not_acceptable_and_says_json_only() {
    let (s, _client) = server().await;
    let (code, status) = request(
        s.addr(),
        "GET /api/v1/namespaces HTTP/1.1\r\nAccept: application/vnd.kubernetes.protobuf",
        "",
    )
    .await;
    assert_eq!(code, 406);
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "NotAcceptable");
    let message = status["message"].as_str().unwrap();
    assert!(message.contains("speaks JSON only"), "{message}");
}

#[tokio::test]
async fn a_protobuf_body_is_an_unsupported_media_type() {
    let (s, _client) = server().await;
    let (code, status) = request(
        s.addr(),
        "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nContent-Type: application/vnd.kubernetes.protobuf",
        "k8s\0",
    )
    .await;
    assert_eq!(code, 415);
    assert!(
        status["message"].as_str().unwrap().contains("JSON only"),
        "{status}"
    );
}

#[tokio::test]
async fn json_is_served_when_the_client_also_accepts_it() {
    let (s, _client) = server().await;
    let (code, list) = request(
        s.addr(),
        "GET /api/v1/namespaces HTTP/1.1\r\nAccept: application/vnd.kubernetes.protobuf, application/json",
        "",
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(list["kind"], "NamespaceList");
}

//! Hostile input: each case gets a specific, clear answer; afterwards the
//! handler still serves, and only the valid cases are queued.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use test_support::broker::Topology;

use crate::app::{App, spawn_app};

const LIMIT: usize = 4096;

/// One raw HTTP/1.1 exchange on a fresh connection: the status line's code
/// and the response text, or `None` when the server closed without answering.
async fn exchange(app: &App, request: &[u8]) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    // The server may answer (and close) before it has read all of a large request.
    let _ = stream.write_all(request).await;
    let _ = stream.shutdown().await;
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut response)).await;
    assert!(
        read.is_ok(),
        "no answer within 20 s to {}",
        String::from_utf8_lossy(&request[..request.len().min(80)])
    );
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text))
}

fn chunked(path: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    if !body.is_empty() {
        request.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
        request.extend_from_slice(body);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    request
}

fn with_length(method: &str, path: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

const HOST_HEADERS: &str = "X-Azure-Functions-InvocationId: 0f8fad5b-d9cb-469f-a165-70867728950e\r\nContent-Type: application/json; charset=utf-8\r\n";

/// A payload-mode invocation, chunked as the host sends it.
fn invoke(json: &[u8]) -> Vec<u8> {
    chunked("/WebhookForwarder", HOST_HEADERS, json)
}

fn envelope(req: &str) -> Vec<u8> {
    format!(r#"{{"Data":{{"req":{req}}},"Metadata":{{}}}}"#).into_bytes()
}

fn text_body(body: &str) -> Vec<u8> {
    envelope(&format!(
        r#"{{"Method":"POST","Headers":{{"Content-Type":["text/plain"]}},"Body":{}}}"#,
        serde_json::Value::String(body.to_owned())
    ))
}

/// What a case expects: the HTTP status, and in payload mode the caller's
/// status inside `Outputs.res`; `queued` says whether a message should result.
struct Expect {
    http: u16,
    inner: Option<u16>,
    queued: bool,
}

const fn answer(http: u16) -> Expect {
    Expect {
        http,
        inner: None,
        queued: false,
    }
}
const fn host(http: u16, inner: u16) -> Expect {
    Expect {
        http,
        inner: Some(inner),
        queued: inner == 200,
    }
}
const QUEUED: Expect = Expect {
    http: 200,
    inner: None,
    queued: true,
};

fn corpus() -> Vec<(&'static str, Vec<u8>, Expect)> {
    let nest = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let padding = " ".repeat(LIMIT * 6 + 1024 * 1024 + 1);
    vec![
        ("truncated JSON", invoke(br#"{"Data":{"req":{"Method":"PO"#), host(400, 400)),
        ("deep nesting in a read field", invoke(&envelope(&format!(r#"{{"Method":"POST","Headers":{{"A":{}}}}}"#, nest(50_000)))), host(400, 400)),
        ("deep nesting in an ignored field", invoke(&envelope(&format!(r#"{{"Method":"POST","Params":{}}}"#, nest(50_000)))), host(200, 200)),
        ("Data is a string", invoke(br#"{"Data":"x"}"#), host(400, 400)),
        ("no Data", invoke(br#"{"Metadata":{}}"#), host(400, 400)),
        ("no Data.req", invoke(br#"{"Data":{}}"#), host(400, 400)),
        ("Method is a number", invoke(&envelope(r#"{"Method":1}"#)), host(400, 400)),
        ("Method is missing", invoke(&envelope(r#"{"Url":"http://x/"}"#)), host(400, 400)),
        ("Url is an object", invoke(&envelope(r#"{"Method":"POST","Url":{}}"#)), host(400, 400)),
        ("Query is a number", invoke(&envelope(r#"{"Method":"POST","Query":5}"#)), host(400, 400)),
        ("Query value is an array", invoke(&envelope(r#"{"Method":"POST","Query":{"a":[1]}}"#)), host(400, 400)),
        ("Headers is an array", invoke(&envelope(r#"{"Method":"POST","Headers":[]}"#)), host(400, 400)),
        ("a header value is a number", invoke(&envelope(r#"{"Method":"POST","Headers":{"A":[1]}}"#)), host(400, 400)),
        ("Body is an object", invoke(&envelope(r#"{"Method":"POST","Body":{"a":1}}"#)), host(400, 400)),
        ("Body is a number", invoke(&envelope(r#"{"Method":"POST","Body":1}"#)), host(400, 400)),
        ("Body is not base64 for octet-stream", invoke(&envelope(r#"{"Method":"POST","Headers":{"Content-Type":["application/octet-stream"]},"Body":"%%%"}"#)), host(400, 400)),
        ("empty invocation body", invoke(b""), host(400, 400)),
        ("JSON null", invoke(b"null"), host(400, 400)),
        ("JSON array", invoke(b"[]"), host(400, 400)),
        ("trailing garbage", invoke(br#"{"Data":{"req":{"Method":"POST"}}} }"#), host(400, 400)),
        ("invalid UTF-8 in the JSON", invoke(b"{\"Data\":{\"req\":{\"Method\":\"PO\xff\"}}}"), host(400, 400)),
        ("NUL bytes in a text body", invoke(&text_body("a\0b\0")), host(200, 200)),
        ("body exactly at the limit", invoke(&text_body(&"a".repeat(LIMIT))), host(200, 200)),
        ("body one byte over the limit", invoke(&text_body(&"a".repeat(LIMIT + 1))), host(200, 413)),
        ("invocation JSON far over any limit", invoke(format!(r#"{{"Data":{{"req":{{"Method":"POST"}}}}{padding}}}"#).as_bytes()), host(200, 413)),
        ("invocation with Content-Length", with_length("POST", "/WebhookForwarder", HOST_HEADERS, &text_body("len")), host(200, 200)),
        ("forwarded body at the limit", chunked("/api/WebhookForwarder", "", &[b'f'; LIMIT]), QUEUED),
        ("forwarded body over the limit, chunked", chunked("/api/WebhookForwarder", "", &[b'f'; LIMIT + 1]), answer(413)),
        ("forwarded body over the limit, Content-Length", with_length("POST", "/api/WebhookForwarder", "", &[b'f'; LIMIT + 1]), answer(413)),
        ("forwarded invalid UTF-8", chunked("/api/WebhookForwarder", "Content-Type: application/x-bin\r\n", b"\xff\xfe\x00"), QUEUED),
        ("PUT", with_length("PUT", "/api/WebhookForwarder", "", b"x"), answer(405)),
        ("DELETE", with_length("DELETE", "/api/WebhookForwarder", "", b""), answer(405)),
        ("GET on the payload path", with_length("GET", "/WebhookForwarder", "", b""), answer(405)),
        ("unknown path", with_length("POST", "/api/Other", "", b"x"), answer(404)),
        ("path traversal", with_length("POST", "/api/WebhookForwarder/../../etc/passwd", "", b"x"), answer(404)),
        ("enormous header", with_length("POST", "/api/WebhookForwarder", &format!("X-Big: {}\r\n", "b".repeat(1024 * 1024)), b"x"), answer(431)),
        ("too many headers", with_length("POST", "/api/WebhookForwarder", &"X-Many: 1\r\n".repeat(500), b"x"), answer(431)),
        ("garbage request line", b"GARBAGE\r\n\r\n".to_vec(), answer(400)),
        ("invalid chunk size", b"POST /api/WebhookForwarder HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nabc\r\n0\r\n\r\n".to_vec(), answer(400)),
        ("body shorter than its Content-Length", b"POST /api/WebhookForwarder HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nConnection: close\r\n\r\nshort".to_vec(), answer(400)),
        // RFC 9112 6.3: Transfer-Encoding overrides Content-Length; hyper reads it chunked (empty here).
        ("Content-Length and chunked together", b"POST /api/WebhookForwarder HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n".to_vec(), QUEUED),
    ]
}

#[tokio::test]
async fn every_hostile_input_gets_its_specific_answer_and_the_process_survives() {
    let topology = Topology::declare().await;
    let limit = LIMIT.to_string();
    let app = spawn_app(&topology.settings().with("MaxBodyBytes", &limit)).await;
    let cases = corpus();
    assert!(cases.len() >= 30);
    let mut expected_queued = 0;

    for (name, request, expect) in &cases {
        let answered = exchange(&app, request).await;
        let Some((status, text)) = answered else {
            panic!("{name}: closed without an answer")
        };
        assert_eq!(status, expect.http, "{name}: {text}");
        if let Some(inner) = expect.inner {
            let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
            let answer: serde_json::Value =
                serde_json::from_str(body).unwrap_or_else(|e| panic!("{name}: {e}: {body}"));
            assert_eq!(
                answer["Outputs"]["res"]["statusCode"],
                inner.to_string(),
                "{name}: {body}"
            );
        }
        expected_queued += usize::from(expect.queued);
    }

    let health = app.request(reqwest::Method::GET, "/").send().await.unwrap();
    assert_eq!(health.status(), 200);
    let queued = topology.take(expected_queued).await;
    assert_eq!(queued.len(), expected_queued);
    assert!(
        topology.take_all().await.is_empty(),
        "a rejected case reached the queue"
    );
}

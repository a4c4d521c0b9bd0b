//! Embedded chat backend (plain ws:// broadcast rooms) and chat page server for `wsguard demo`.
//! Both are deliberately small and bounded so the demo exercises wsguard, not this code.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

mod chat;
mod conn;
pub mod negotiate;

use conn::{accept, HANDSHAKE_TIMEOUT};

pub use chat::{run_chat_backend, MAX_CLIENTS, MAX_MESSAGE_BYTES, ROOM_QUEUE};

const CHAT_HTML: &str = include_str!("chat.html");

/// Serves the chat page on `listener` with `ws_url` as its WebSocket endpoint.
///
/// `GET /` returns the page under a nonce-based CSP whose `connect-src` is the
/// origin of `ws_url`; anything else is 404 (405 for other methods on `/`).
/// Fails at once with `InvalidInput` if `ws_url` is not a plain ws(s):// URL.
pub async fn run_page_server(listener: TcpListener, ws_url: String) -> io::Result<()> {
    run_labelled_page_server(listener, ws_url, None).await
}

/// [`run_page_server`], with an optional `banner` shown in a red strip above
/// the chat and put in the document title, e.g. to label a page on an origin
/// that is not in the allow-list (`"evil.example — not in the allow-list"`).
pub async fn run_labelled_page_server(
    listener: TcpListener,
    ws_url: String,
    banner: Option<String>,
) -> io::Result<()> {
    let connect_src = ws_origin(&ws_url).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("demo page: {ws_url:?} is not a ws:// or wss:// URL of printable ASCII"),
        )
    })?;
    let page = Arc::new(PageState {
        html: PageHtml::new(&ws_url, banner.as_deref()),
        connect_src,
    });
    tracing::info!(addr = %listener.local_addr()?, %ws_url, banner = banner.as_deref().unwrap_or(""), "demo page server listening");
    loop {
        let (stream, peer) = accept(&listener, "demo page server").await;
        let page = page.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let page = page.clone();
                async move { Ok::<_, Infallible>(page.respond(&req)) }
            });
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HANDSHAKE_TIMEOUT)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "demo page connection ended with error");
            }
        });
    }
}

struct PageState {
    html: PageHtml,
    connect_src: String,
}

/// The page with its fixed values filled in, split where the per-request
/// nonce goes. Filled in one pass over the template, so a value that looks
/// like a placeholder (`{{NONCE}}` in a URL) stays text.
struct PageHtml {
    pieces: Vec<String>,
}

impl PageHtml {
    fn new(ws_url: &str, banner: Option<&str>) -> Self {
        let title = match banner {
            Some(b) => format!("{} \u{b7} wsguard demo chat", html_escape(b)),
            None => "wsguard demo chat".to_owned(),
        };
        let banner = banner.map_or(String::new(), |b| {
            format!("<p id=\"banner\" role=\"note\">{}</p>", html_escape(b))
        });
        let ws_url = html_escape(ws_url);
        let pieces = CHAT_HTML
            .split("{{NONCE}}")
            .map(|piece| {
                fill(
                    piece,
                    &[("WS_URL", &ws_url), ("TITLE", &title), ("BANNER", &banner)],
                )
            })
            .collect();
        Self { pieces }
    }

    fn with_nonce(&self, nonce: &str) -> String {
        self.pieces.join(nonce)
    }
}

/// Replaces each `{{KEY}}` of `vars` in `template`; other text is copied as is.
fn fill(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(at) = rest.find("{{") {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let known = vars.iter().find_map(|(key, value)| {
            let tail = rest.strip_prefix("{{")?.strip_prefix(key)?;
            Some((value, tail.strip_prefix("}}")?))
        });
        match known {
            Some((value, tail)) => {
                out.push_str(value);
                rest = tail;
            }
            None => {
                out.push('{');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

impl PageState {
    fn respond<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        if req.uri().path() != "/" {
            return plain(StatusCode::NOT_FOUND, "not found\n");
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut resp = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return resp;
        }
        let Some(nonce) = nonce() else {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "no randomness for a CSP nonce\n",
            );
        };
        let body = self.html.with_nonce(&nonce);
        let csp = format!(
            "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
             connect-src {}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            self.connect_src
        );
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        let h = resp.headers_mut();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        // connect_src was checked to be printable ASCII, and the nonce is hex.
        if let Ok(v) = HeaderValue::from_str(&csp) {
            h.insert("content-security-policy", v);
        }
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
        resp
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// `scheme://authority` of a ws(s) URL, or None if it could break out of the CSP header.
fn ws_origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if !matches!(scheme, "ws" | "wss") {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']');
    if authority.is_empty()
        || !authority.chars().all(safe)
        || !url.chars().all(|c| c.is_ascii_graphic())
    {
        return None;
    }
    Some(format!("{scheme}://{authority}"))
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A fresh 128-bit CSP nonce, hex; None only if the OS RNG fails.
fn nonce() -> Option<String> {
    let mut buf = [0u8; 16];
    getrandom::fill(&mut buf).ok()?;
    Some(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    const WAIT: Duration = Duration::from_secs(5);

    async fn page_server(ws_url: &str) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(run_page_server(listener, ws_url.to_owned()));
        addr
    }

    /// Raw HTTP/1.1 GET with Connection: close; returns the whole response.
    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        tokio::time::timeout(WAIT, tcp.read_to_string(&mut out))
            .await
            .unwrap()
            .unwrap();
        out
    }

    #[tokio::test]
    async fn page_is_templated_with_csp() {
        let addr = page_server("wss://localhost:8443/chat").await;
        let resp = get(addr, "/").await;
        let lower = resp.to_ascii_lowercase();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(lower.contains("content-type: text/html; charset=utf-8"));
        assert!(
            lower.contains("connect-src wss://localhost:8443;"),
            "{resp}"
        );
        assert!(resp.contains("wss://localhost:8443/chat"));
        assert!(!resp.contains("{{"), "untemplated placeholder left");
        // The nonce in the header must be the one in the page.
        let nonce = lower.split("'nonce-").nth(1).unwrap();
        let nonce = &nonce[..32];
        assert!(resp.contains(&format!("nonce=\"{nonce}\"")));
    }

    #[tokio::test]
    async fn banner_is_shown_escaped_and_only_when_asked() {
        let plain_page = get(page_server("wss://localhost:8443/chat").await, "/").await;
        assert!(!plain_page.contains("id=\"banner\""));
        assert!(plain_page.contains("<title>wsguard demo chat</title>"));

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(run_labelled_page_server(
            listener,
            "wss://localhost:8443/chat".into(),
            Some("evil.example <b>& {{NONCE}}".into()),
        ));
        let resp = get(addr, "/").await;
        let text = "evil.example &lt;b&gt;&amp; {{NONCE}}";
        assert!(
            resp.contains(&format!("<p id=\"banner\" role=\"note\">{text}</p>")),
            "{resp}"
        );
        assert!(resp.contains(&format!("<title>{text} \u{b7} wsguard demo chat</title>")));
        assert!(!resp.contains("<b>"));
    }

    #[test]
    fn fill_is_one_pass() {
        let vars = [("A", "{{B}}"), ("B", "b")];
        assert_eq!(fill("x{{A}}y{{B}}z", &vars), "x{{B}}ybz");
        assert_eq!(fill("{{C}} {{A", &vars), "{{C}} {{A");
        assert_eq!(fill("{{{A}}}", &vars), "{{{B}}}");
    }

    #[tokio::test]
    async fn other_paths_are_404() {
        let addr = page_server("wss://localhost:8443/chat").await;
        assert!(get(addr, "/other").await.starts_with("HTTP/1.1 404"));
    }

    #[tokio::test]
    async fn bad_ws_url_is_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let err = run_page_server(listener, "wss://x;\r\nevil".into())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn origin_and_nonce_helpers() {
        assert_eq!(
            ws_origin("wss://localhost:8443/chat?x=1").as_deref(),
            Some("wss://localhost:8443")
        );
        assert_eq!(ws_origin("ws://[::1]:9/").as_deref(), Some("ws://[::1]:9"));
        assert_eq!(ws_origin("https://localhost/"), None);
        let n = nonce().unwrap();
        assert_eq!(n.len(), 32);
        assert_ne!(Some(n), nonce());
    }
}

//! The connect pages: small, plain, accessible HTML, and the headers every connect
//! response carries (`Cache-Control: no-store`, `Referrer-Policy: no-referrer`,
//! `X-Content-Type-Options: nosniff`, a `Content-Security-Policy` that allows no
//! script, and no framing). Every value shown is HTML-escaped here; no page ever
//! carries a token, code, state or verifier.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

/// No scripts, no remote anything, no framing, no form posts, no `<base>`.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; \
                       base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// What a page reports, for its `data-sidekey-connect` marker (tests and scrapers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Connected,
    NotConnected,
    Error,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Connected => "connected",
            Kind::NotConnected => "not-connected",
            Kind::Error => "error",
        }
    }
}

/// Escape text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Set the connect security headers on any response.
pub fn secure<B>(resp: &mut Response<B>) {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
}

/// A page: `title` and `lines` are plain text (escaped here).
pub fn page(
    status: StatusCode,
    kind: Kind,
    title: &str,
    lines: &[String],
) -> Response<Full<Bytes>> {
    let mut body = String::with_capacity(1024);
    body.push_str(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>",
    );
    body.push_str(&escape(title));
    body.push_str(
        "</title>\n<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;\
         padding:0 1rem;line-height:1.5;color:#111;background:#fff}h1{font-size:1.5rem}</style>\n\
         </head>\n<body>\n<main data-sidekey-connect=\"",
    );
    body.push_str(kind.as_str());
    body.push_str("\">\n<h1>");
    body.push_str(&escape(title));
    body.push_str("</h1>\n");
    for l in lines {
        body.push_str("<p>");
        body.push_str(&escape(l));
        body.push_str("</p>\n");
    }
    body.push_str("</main>\n</body>\n</html>\n");
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure(&mut resp);
    resp
}

/// A 302 to `location` (setting `cookie` when given), with the security headers.
pub fn redirect(location: &str, cookie: Option<&str>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::FOUND;
    match HeaderValue::from_str(location) {
        Ok(v) => {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        Err(_) => {
            return page(
                StatusCode::INTERNAL_SERVER_ERROR,
                Kind::Error,
                "Cannot continue",
                &["The provider's address in sidekey's configuration is not valid.".into()],
            );
        }
    }
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(c).ok()) {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    secure(&mut resp);
    resp
}

/// Plain text (`/healthz`), with the same headers.
pub fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    secure(&mut resp);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_and_carry_the_headers() {
        let r = page(
            StatusCode::OK,
            Kind::Connected,
            "Connected <notion>",
            &["for \"a&b\" <script>".into()],
        );
        let h = r.headers();
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
        assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && !csp.contains("script-src"));
        let body = format!("{:?}", r.into_body());
        assert!(
            !body.contains("<script>") && body.contains("&lt;script&gt;"),
            "{body}"
        );
    }
}

//! The dashboard's read rules on the TCP listener: the bearer token (`[http] token_file`), its
//! cookie for browsers and EventSource, and the security headers every answer carries.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The cookie a browser keeps the token in after one authenticated request.
pub const COOKIE: &str = "ugro_token";

/// The query parameter a browser's first request may carry the token in.
pub const QUERY: &str = "token";

/// The strict Content-Security-Policy of every answer.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Longest token file read.
const MAX_TOKEN_BYTES: u64 = 4096;

/// Why the token could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the dashboard token file {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "the dashboard token file {path} is empty, longer than {MAX_TOKEN_BYTES} bytes or not one line of visible ASCII"
    )]
    Invalid { path: PathBuf },
}

/// The bearer token every request beyond loopback must carry.
#[derive(Clone)]
pub struct Token(Arc<str>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

impl Token {
    /// Reads the token from `path` (surrounding whitespace trimmed).
    pub fn load(path: &Path) -> Result<Token, TokenError> {
        use std::io::Read;
        let read = |path: &Path| -> std::io::Result<String> {
            let mut s = String::new();
            std::fs::File::open(path)?
                .take(MAX_TOKEN_BYTES + 1)
                .read_to_string(&mut s)?;
            Ok(s)
        };
        let text = read(path).map_err(|cause| TokenError::Read {
            path: path.to_path_buf(),
            cause,
        })?;
        let t = text.trim();
        if t.is_empty()
            || text.len() as u64 > MAX_TOKEN_BYTES
            || !t.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(TokenError::Invalid {
                path: path.to_path_buf(),
            });
        }
        Ok(Token(t.into()))
    }

    /// Compares in time independent of where the strings differ.
    fn matches(&self, given: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), given.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// The token a request carries: `Authorization: Bearer`, else the cookie.
fn presented(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    let bearer = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let cookies = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='));
    bearer.chain(cookies)
}

/// The query without its `token` parameter, and that parameter's value.
fn split_token(query: &str) -> (String, Option<String>) {
    let mut rest = Vec::new();
    let mut token = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.strip_prefix(QUERY).and_then(|v| v.strip_prefix('=')) {
            Some(v) => token = Some(v.to_string()),
            None => rest.push(pair),
        }
    }
    (rest.join("&"), token)
}

/// Lets a request through when no token is configured or it carries the token; a request whose
/// query carries the right `?token=` is answered with a redirect to the same URL without it
/// and a cookie holding the token (HttpOnly, SameSite=Strict), so the token leaves the address
/// bar and the page's EventSource (which cannot send headers) is authenticated by the cookie.
/// Anything else is 401.
pub async fn require_token(
    State(token): State<Option<Token>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(token) = token else {
        return next.run(req).await;
    };
    if presented(req.headers()).any(|t| token.matches(t)) {
        return next.run(req).await;
    }
    let (rest, from_query) = split_token(req.uri().query().unwrap_or(""));
    if from_query.is_some_and(|t| token.matches(&t)) {
        let path = req.uri().path();
        let to = if rest.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{rest}")
        };
        let cookie = format!("{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/", token.0);
        let mut resp = StatusCode::SEE_OTHER.into_response();
        if let (Ok(loc), Ok(c)) = (HeaderValue::from_str(&to), HeaderValue::from_str(&cookie)) {
            resp.headers_mut().insert(header::LOCATION, loc);
            resp.headers_mut().insert(header::SET_COOKIE, c);
        }
        return resp;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer realm=\"ugro-monitor\"")],
        "401 Unauthorized: this dashboard needs its bearer token (Authorization: Bearer …, or \
         ?token=… once in a browser)\n",
    )
        .into_response()
}

/// Adds the security headers to every answer.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_taken_from_the_query_and_the_rest_kept() {
        assert_eq!(
            split_token("a=1&token=xyz&b=2"),
            ("a=1&b=2".to_string(), Some("xyz".to_string()))
        );
        assert_eq!(split_token("tokens=1"), ("tokens=1".to_string(), None));
    }

    #[test]
    fn bearer_and_cookie_are_both_read() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("x=1; ugro_token=def"),
        );
        let got: Vec<&str> = presented(&h).collect();
        assert_eq!(got, ["abc", "def"]);
        let t = Token("def".into());
        assert!(t.matches("def") && !t.matches("de") && !t.matches("deg"));
    }
}

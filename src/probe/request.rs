//! Builds the request of one HTTP hop from the agent's spec: method, target, Host,
//! User-Agent, the configured headers and credentials (only where `redirect` allows them).

use base64::Engine;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request};
use http_body_util::Empty;
use url::{Position, Url};

use super::{Failure, FailureReason};
use crate::config::{AgentSpec, Auth};

const USER_AGENT: &str = concat!("agent-health-exporter/", env!("CARGO_PKG_VERSION"));

/// The request for `url`. `to_origin` says whether `url` is on the configured URL's origin:
/// only then do the configured headers and credentials go out.
pub(super) fn build_request(
    spec: &AgentSpec,
    url: &Url,
    method: &Method,
    to_origin: bool,
) -> Result<Request<Empty<Bytes>>, Failure> {
    let mut request = Request::new(Empty::new());
    *request.method_mut() = method.clone();
    *request.uri_mut() = url[Position::BeforePath..Position::AfterQuery]
        .parse()
        .map_err(|_| {
            Failure::new(
                FailureReason::Protocol,
                "URL path is not a valid request target",
            )
        })?;
    let host =
        HeaderValue::from_str(&url[Position::BeforeHost..Position::AfterPort]).map_err(|_| {
            Failure::new(
                FailureReason::Protocol,
                "URL host is not a valid Host header",
            )
        })?;
    let headers = request.headers_mut();
    headers.insert(header::HOST, host);
    headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    if to_origin {
        // A configured header replaces a default one of the same name; repeated names all go out.
        let mut seen: Vec<&HeaderName> = Vec::new();
        for (name, value) in &spec.http.headers {
            if seen.contains(&name) {
                headers.append(name.clone(), value.clone());
            } else {
                headers.insert(name.clone(), value.clone());
                seen.push(name);
            }
        }
        if let Some(auth) = &spec.http.auth {
            headers.insert(header::AUTHORIZATION, auth_header(auth)?);
        }
    }
    // One fresh connection per probe: the agent must not keep it open for us.
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    Ok(request)
}

pub(super) fn auth_header(auth: &Auth) -> Result<HeaderValue, Failure> {
    let value = match auth {
        Auth::Bearer(token) => format!("Bearer {}", token.expose()),
        Auth::Basic { username, password } => {
            let pair = format!("{username}:{}", password.expose());
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        }
    };
    // The message must not quote the value: it is a credential.
    let mut value = HeaderValue::from_str(&value).map_err(|_| {
        Failure::new(
            FailureReason::Protocol,
            "the credential has characters not allowed in a header",
        )
    })?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::probe::http::tests::spec;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn credentials_are_marked_sensitive_and_dropped_for_other_origins() {
        let spec = spec();
        let target = url("http://agent/health");
        let request = build_request(&spec, &target, &Method::GET, true).unwrap();
        let auth = request.headers().get(header::AUTHORIZATION).unwrap();
        assert!(auth.is_sensitive());
        assert_eq!(format!("{auth:?}"), "Sensitive");
        let request = build_request(&spec, &target, &Method::GET, false).unwrap();
        assert!(request.headers().get(header::AUTHORIZATION).is_none());
    }

    #[test]
    fn configured_headers_are_dropped_for_other_origins() {
        let mut spec = spec();
        spec.http.headers.push((
            HeaderName::from_static("x-api-key"),
            HeaderValue::from_static("k3y"),
        ));
        let target = url("http://agent/health");
        let request = build_request(&spec, &target, &Method::GET, true).unwrap();
        assert_eq!(request.headers()["x-api-key"], "k3y");
        let request = build_request(&spec, &target, &Method::GET, false).unwrap();
        assert!(request.headers().get("x-api-key").is_none());
        assert_eq!(request.headers()[header::USER_AGENT], USER_AGENT);
    }

    #[test]
    fn invalid_bearer_token_is_not_quoted() {
        let mut spec = spec();
        spec.http.auth = Some(Auth::Bearer(Secret::new("s3\ncret".into())));
        let failure = build_request(&spec, &url("http://agent/"), &Method::GET, true).unwrap_err();
        assert!(!failure.error.contains("s3"), "{}", failure.error);
    }

    #[test]
    fn basic_auth_is_base64_of_user_colon_password() {
        let auth = Auth::Basic {
            username: "probe".into(),
            password: Secret::new("hunter2".into()),
        };
        assert_eq!(auth_header(&auth).unwrap(), "Basic cHJvYmU6aHVudGVyMg==");
    }
}

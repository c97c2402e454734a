//! Which redirects the HTTP probe follows, where to, with which method, and what the next
//! hop may receive: configured headers and credentials stay on the configured URL's origin
//! (scheme, host, port), as curl does without `--location-trusted`.

use http::header::HeaderValue;
use http::Method;
use url::Url;

use super::{excerpt, Failure, FailureReason};

/// The Location to follow, when `status` is a redirect and the agent's config follows them.
pub(super) fn location(
    follow: bool,
    status: u16,
    location: Option<&HeaderValue>,
) -> Option<&HeaderValue> {
    let is_redirect = matches!(status, 301 | 302 | 303 | 307 | 308);
    if follow && is_redirect {
        location
    } else {
        None
    }
}

pub(super) fn next_url(current: &Url, location: &HeaderValue) -> Result<Url, Failure> {
    let bad = |why: String| Failure::new(FailureReason::Redirect, format!("bad Location: {why}"));
    let location = location.to_str().map_err(|_| bad("not ASCII".to_owned()))?;
    let mut next = current.join(location).map_err(|e| bad(e.to_string()))?;
    if !matches!(next.scheme(), "http" | "https") {
        return Err(bad(format!(
            "{}: is not http or https",
            excerpt(next.scheme())
        )));
    }
    next.set_fragment(None);
    Ok(next)
}

/// 303 turns any method but HEAD into GET; 301 and 302 turn POST into GET, as browsers do.
pub(super) fn next_method(method: Method, status: u16) -> Method {
    match status {
        303 if method != Method::HEAD => Method::GET,
        301 | 302 if method == Method::POST => Method::GET,
        _ => method,
    }
}

/// Whether a hop to `url` may carry the configured headers and credentials: only on the
/// configured URL's own origin. Another port or scheme of the same host is another origin.
pub(super) fn same_origin(url: &Url, configured: &Url) -> bool {
    url.origin() == configured.origin()
}

/// Whether `url` is on the agent's own host, the one its certificate and `server_name`
/// speak for; a redirect hop elsewhere is another party's.
pub(super) fn same_host(url: &Url, configured: &Url) -> bool {
    url.host() == configured.host()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn relative_location_resolves_against_the_current_url() {
        let current = url("http://agent:8080/a/b?x=1");
        let next = next_url(&current, &HeaderValue::from_static("../c#frag")).unwrap();
        assert_eq!(next.as_str(), "http://agent:8080/c");
        let next = next_url(&current, &HeaderValue::from_static("https://other/health")).unwrap();
        assert_eq!(next.as_str(), "https://other/health");
    }

    #[test]
    fn location_to_another_scheme_is_a_redirect_failure() {
        let current = url("http://agent/");
        let failure = next_url(&current, &HeaderValue::from_static("ftp://agent/x")).unwrap_err();
        assert_eq!(failure.reason, FailureReason::Redirect);
        assert_eq!(failure.error, "bad Location: ftp: is not http or https");
    }

    #[test]
    fn unparsable_location_is_a_redirect_failure() {
        let current = url("http://agent/");
        let failure = next_url(&current, &HeaderValue::from_static("http://[::1")).unwrap_err();
        assert_eq!(failure.reason, FailureReason::Redirect);
    }

    #[test]
    fn see_other_turns_into_get() {
        assert_eq!(next_method(Method::POST, 303), Method::GET);
        assert_eq!(next_method(Method::HEAD, 303), Method::HEAD);
        assert_eq!(next_method(Method::POST, 302), Method::GET);
        assert_eq!(next_method(Method::POST, 307), Method::POST);
        assert_eq!(next_method(Method::PUT, 301), Method::PUT);
    }

    #[test]
    fn origin_is_scheme_host_and_port() {
        let configured = url("https://agent/health");
        assert!(same_origin(&url("https://agent:443/other"), &configured));
        assert!(!same_origin(&url("http://agent/health"), &configured));
        assert!(!same_origin(&url("https://agent:8443/health"), &configured));
        assert!(!same_origin(&url("https://agent.evil/health"), &configured));
        assert!(same_host(&url("http://agent:8080/"), &configured));
        assert!(!same_host(&url("https://other/"), &configured));
    }
}

//! An agent's `url`: which kind of target it is (http, https, tcp), checked for what each kind
//! needs, with credentials taken out of it so that they never reach labels, logs or the API.

use serde_saphyr::Location;

use super::resolve::Resolver;
use super::secret::Secret;
use super::spec::{Auth, Target};

impl Resolver {
    /// Parses and checks the URL; credentials in it come back separately as basic auth.
    pub(super) fn target(
        &mut self,
        text: &str,
        at: Location,
        what: &str,
    ) -> Option<(Target, Option<Auth>)> {
        let mut url = match url::Url::parse(text) {
            Ok(url) => url,
            Err(e) => {
                self.issue(
                    at,
                    format!("{what}: url is not a valid URL ({e})"),
                    "write a full URL such as http://10.0.0.5:8081/health or tcp://10.0.0.5:9000",
                );
                return None;
            }
        };
        match url.scheme() {
            "http" | "https" => {
                if url.host_str().is_none_or(str::is_empty) {
                    self.issue(
                        at,
                        format!("{what}: url has no host"),
                        "add the agent's host",
                    );
                    return None;
                }
                let auth = (!url.username().is_empty()).then(|| Auth::Basic {
                    username: percent_decode(url.username()),
                    password: Secret::from_origin(
                        "url",
                        url.password().map(percent_decode).unwrap_or_default(),
                    ),
                });
                let _ = url.set_username("");
                let _ = url.set_password(None);
                url.set_fragment(None);
                Some((Target::Http(url), auth))
            }
            "tcp" => {
                let host = url.host_str().unwrap_or_default().to_owned();
                let path_ok = url.path().is_empty() || url.path() == "/";
                match (host.is_empty(), url.port(), path_ok) {
                    (false, Some(port), true) => {
                        let host = host
                            .trim_start_matches('[')
                            .trim_end_matches(']')
                            .to_owned();
                        Some((Target::Tcp { host, port }, None))
                    }
                    _ => {
                        self.issue(
                            at,
                            format!("{what}: a tcp URL needs a host and a port and nothing else"),
                            "write it as tcp://host:port",
                        );
                        None
                    }
                }
            }
            "grpc" | "grpcs" => {
                let target = super::grpc::bare_target(&url);
                if target.is_none() {
                    self.issue(
                        at,
                        format!("{what}: a gRPC URL needs a host and a port and nothing else"),
                        "write it as grpc://host:port or grpcs://host:port",
                    );
                }
                target.map(|t| (t, None))
            }
            other => {
                self.issue(
                    at,
                    format!("{what}: unsupported URL scheme {other:?}"),
                    "use http://, https://, tcp://host:port or grpc(s)://host:port",
                );
                None
            }
        }
    }
}

/// The URL keeps user and password percent-encoded; the probe sends them decoded.
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoded_credentials_are_decoded() {
        assert_eq!(percent_decode("p%40ss%2F"), "p@ss/");
        assert_eq!(percent_decode("plain"), "plain");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
    }
}

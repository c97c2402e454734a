//! An HTTP SD endpoint on loopback whose answer the test changes while the exporter polls it:
//! target groups (as `application/json`), or a failing status.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What the endpoint answers now: a status and a JSON body.
type Answer = Arc<Mutex<(u16, String)>>;

pub struct SdServer {
    pub addr: SocketAddr,
    answer: Answer,
}

impl SdServer {
    /// Serves `groups` (a JSON document of target groups) until told otherwise.
    pub async fn start(groups: &str) -> SdServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let answer: Answer = Arc::new(Mutex::new((200, groups.to_owned())));
        let shared = answer.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let answer = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |_: Request<Incoming>| {
                        let (status, body) = answer.lock().expect("answer").clone();
                        let response = Response::builder()
                            .status(status)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body)))
                            .expect("response");
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        SdServer { addr, answer }
    }

    /// The URL the exporter's `http_sd` asks.
    pub fn url(&self) -> String {
        format!("http://{}/sd", self.addr)
    }

    /// Answers `groups` from now on.
    pub fn serve(&self, groups: &str) {
        *self.answer.lock().expect("answer") = (200, groups.to_owned());
    }

    /// Fails every refresh from now on with `status`.
    pub fn fail(&self, status: u16) {
        *self.answer.lock().expect("answer") = (status, String::new());
    }
}

//! The HTTP client of the remote-write sender and the Pushgateway client: one connection pool per
//! endpoint (HTTP/1.1, keep-alive), TLS with rustls on the ring provider, the endpoint's
//! credentials and extra headers on every request, and a time limit on every request.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::http::header::{HeaderName, HeaderValue, AUTHORIZATION, USER_AGENT};
use axum::http::{Method, StatusCode, Uri};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// The `User-Agent` of every push.
pub(crate) const USER_AGENT_VALUE: &str = concat!("mmo-metrics/", env!("CARGO_PKG_VERSION"));

/// Bytes of a response body kept for the log (receivers explain a 400 in the body).
const RESPONSE_BODY_LIMIT: usize = 4 * 1024;

/// Why a push endpoint's settings cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushConfigError {
    /// The URL does not parse, or is not `http://` or `https://` with a host.
    #[error("push URL `{url}`: expected an http:// or https:// URL with a host; {problem}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The CA file cannot be read or holds no certificate.
    #[error("CA file {path}: {problem}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        problem: String,
    },
    /// An extra header with an invalid name or value.
    #[error("header `{name}`: {problem}")]
    Header {
        /// The header name as given.
        name: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The TLS settings were refused by rustls.
    #[error("TLS settings: {0}")]
    Tls(String),
    /// A remote write external label with an invalid or reserved name.
    #[error("remote write to {url}: external labels: {problem}")]
    ExternalLabel {
        /// The endpoint (without credentials).
        url: String,
        /// What is wrong.
        problem: String,
    },
    /// A Pushgateway grouping label that cannot name a group.
    #[error("Pushgateway grouping label `{name}`: {problem}")]
    Grouping {
        /// The label name (`job` for the job name).
        name: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// Where a push goes and how: the URL, the certificate authorities trusted for `https://`,
/// credentials, extra headers and the time one request may take.
#[derive(Clone)]
pub struct PushEndpoint {
    pub(crate) url: Uri,
    ca_file: Option<PathBuf>,
    authorization: Option<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) timeout: Duration,
}

impl fmt::Debug for PushEndpoint {
    // Credentials never reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushEndpoint")
            .field("url", &self.url)
            .field("ca_file", &self.ca_file)
            .field("authorization", &self.authorization.as_ref().map(|_| "<redacted>"))
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl PushEndpoint {
    /// An endpoint at `url` (`http://` or `https://`), trusting the system's certificate
    /// authorities, without credentials, with 10 s per request.
    pub fn new(url: &str) -> Result<Self, PushConfigError> {
        let bad = |problem: String| PushConfigError::Url {
            url: url.to_owned(),
            problem,
        };
        let uri: Uri = url.parse().map_err(|e| bad(format!("it does not parse: {e}")))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            Some(other) => return Err(bad(format!("found the scheme `{other}`"))),
            None => return Err(bad("found no scheme".into())),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(bad("found no host".into()));
        }
        Ok(Self {
            url: uri,
            ca_file: None,
            authorization: None,
            headers: Vec::new(),
            timeout: Duration::from_secs(10),
        })
    }

    /// The URL pushes go to.
    pub fn url(&self) -> &Uri {
        &self.url
    }

    /// Trusts the certificate authorities in this PEM file (instead of the system's) for an
    /// `https://` URL.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Sends `Authorization: Basic` with these credentials (replaces a bearer token).
    pub fn basic_auth(mut self, user: &str, password: &str) -> Self {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.authorization = Some(format!("Basic {token}"));
        self
    }

    /// Sends `Authorization: Bearer TOKEN` (replaces basic auth).
    pub fn bearer_token(mut self, token: &str) -> Self {
        self.authorization = Some(format!("Bearer {token}"));
        self
    }

    /// Adds a header to every request (e.g. Mimir's `X-Scope-OrgID`).
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, PushConfigError> {
        let bad = |problem: String| PushConfigError::Header {
            name: name.to_owned(),
            problem,
        };
        let header_name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad("expected a valid HTTP header name".into()))?;
        let header_value = HeaderValue::from_str(value)
            .map_err(|_| bad("expected a value of visible ASCII characters and spaces".into()))?;
        self.headers.push((header_name, header_value));
        Ok(self)
    }

    /// Time one request may take, from connecting to the end of the response (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The URL with its credentials and query left out, for logs and errors.
    pub(crate) fn display_url(&self) -> String {
        let scheme = self.url.scheme_str().unwrap_or("http");
        let host = self.url.host().unwrap_or("");
        let port = self.url.port().map(|p| format!(":{p}")).unwrap_or_default();
        format!("{scheme}://{host}{port}{}", self.url.path())
    }
}

/// What a request ended with.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The receiver answered: its status and the start of its body.
    Answered(StatusCode, Bytes),
    /// No answer: connecting, TLS, sending or reading failed, or the time limit passed.
    Failed(String),
}

/// A client for one endpoint.
#[derive(Clone)]
pub(crate) struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    endpoint: Arc<PushEndpoint>,
}

impl HttpClient {
    /// A client with the endpoint's TLS trust; reads the CA file now, so a bad one is an error at
    /// start rather than at the first push.
    pub(crate) fn new(endpoint: PushEndpoint) -> Result<Self, PushConfigError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match &endpoint.ca_file {
            Some(path) => {
                let roots = read_roots(path)?;
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| PushConfigError::Tls(e.to_string()))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                builder.with_tls_config(config)
            }
            None => builder
                .with_provider_and_native_roots(provider)
                .map_err(|e| PushConfigError::Tls(format!("loading the system's certificate authorities: {e}")))?,
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(endpoint.timeout));
        http.set_nodelay(true);
        let connector = builder.https_or_http().enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(4)
            .build(connector);
        Ok(Self {
            client,
            endpoint: Arc::new(endpoint),
        })
    }

    /// The endpoint this client sends to.
    pub(crate) fn endpoint(&self) -> &PushEndpoint {
        &self.endpoint
    }

    /// Sends one request to `uri` (the endpoint's URL or one under it) with the endpoint's
    /// credentials and headers, then `headers`. Must run inside a tokio runtime.
    pub(crate) async fn send(
        &self,
        method: Method,
        uri: Uri,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Outcome {
        let mut request = axum::http::Request::builder().method(method).uri(uri);
        request = request.header(USER_AGENT, USER_AGENT_VALUE);
        if let Some(auth) = &self.endpoint.authorization {
            match HeaderValue::from_str(auth) {
                Ok(mut value) => {
                    value.set_sensitive(true);
                    request = request.header(AUTHORIZATION, value);
                }
                Err(_) => return Outcome::Failed("the credentials are not valid in an HTTP header".into()),
            }
        }
        for (name, value) in self.endpoint.headers.iter().chain(headers) {
            request = request.header(name, value);
        }
        let request = match request.body(Full::new(body)) {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(format!("building the request: {e}")),
        };
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| describe(&e))?;
            let status = response.status();
            // The body is read (up to a limit) so the connection can be reused.
            let body = match Limited::new(response.into_body(), RESPONSE_BODY_LIMIT).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => Bytes::new(),
            };
            Ok::<_, String>((status, body))
        };
        match tokio::time::timeout(self.endpoint.timeout, exchange).await {
            Ok(Ok((status, body))) => Outcome::Answered(status, body),
            Ok(Err(e)) => Outcome::Failed(e),
            Err(_) => Outcome::Failed(format!("no answer within {:?}", self.endpoint.timeout)),
        }
    }
}

/// The error and its causes on one line (hyper's top-level message alone says only "client error").
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn read_roots(path: &Path) -> Result<rustls::RootCertStore, PushConfigError> {
    let bad = |problem: String| PushConfigError::CaFile {
        path: path.to_owned(),
        problem,
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    for cert in certs {
        let cert = cert.map_err(|e| bad(format!("expected PEM certificates: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("a certificate rustls refuses: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad("expected at least one PEM certificate, found none".into()));
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(PushEndpoint::new("http://127.0.0.1:9090/api/v1/write").is_ok());
        assert!(PushEndpoint::new("https://mimir.example/api/v1/push").is_ok());
        for (url, expected) in [
            ("ftp://host/x", "found the scheme `ftp`"),
            ("/api/v1/write", "found no scheme"),
            ("not a url", "does not parse"),
        ] {
            let err = PushEndpoint::new(url).unwrap_err().to_string();
            assert!(err.contains(expected), "{url}: {err}");
            assert!(err.contains(url), "{url}: {err}");
        }
    }

    #[test]
    fn credentials_stay_out_of_debug_and_display() {
        let e = PushEndpoint::new("https://u:p@host:8443/push?x=1")
            .unwrap()
            .basic_auth("user", "secret");
        let debug = format!("{e:?}");
        assert!(!debug.contains("secret") && debug.contains("<redacted>"), "{debug}");
        assert_eq!(e.display_url(), "https://host:8443/push");
    }

    #[test]
    fn bad_headers_and_ca_files_are_named() {
        let e = PushEndpoint::new("http://h/").unwrap();
        let err = e.clone().header("X Bad", "v").unwrap_err().to_string();
        assert!(err.contains("`X Bad`"), "{err}");
        let err = e.clone().header("X-Scope-OrgID", "a\nb").unwrap_err().to_string();
        assert!(err.contains("X-Scope-OrgID"), "{err}");

        let dir = std::env::temp_dir().join(format!("mmo-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").unwrap();
        let err = HttpClient::new(e.clone().ca_file(&empty)).err().unwrap().to_string();
        assert!(err.contains("empty.pem") && err.contains("found none"), "{err}");
        let missing = dir.join("missing.pem");
        let err = HttpClient::new(e.ca_file(&missing)).err().unwrap().to_string();
        assert!(err.contains("missing.pem") && err.contains("cannot read"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

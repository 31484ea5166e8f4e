//! The web configuration file of Prometheus' exporters (`--web.config.file`, the
//! [exporter-toolkit format](https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md)):
//! TLS, client certificates, basic auth and extra response headers.
//!
//! Supported keys:
//!
//! - `tls_server_config`: `cert_file`, `key_file`, `client_auth_type` (`NoClientCert`,
//!   `RequestClientCert`, `RequireAnyClientCert`, `VerifyClientCertIfGiven`,
//!   `RequireAndVerifyClientCert`), `client_ca_file`, `min_version` and `max_version` (`TLS12`,
//!   `TLS13`; rustls has no older version), `cipher_suites` (Go names of the TLS 1.2 ECDHE AEAD
//!   suites; TLS 1.3 suites are not configurable, as in Go), `curve_preferences` (`X25519`,
//!   `CurveP256`, `CurveP384`), `prefer_server_cipher_suites`;
//! - `http_server_config`: `headers` (the five security headers exporter-toolkit allows), `http2`
//!   (accepted; the endpoint speaks HTTP/1.1 only);
//! - `basic_auth_users`: user name → bcrypt hash.
//!
//! Any other key is refused with an error naming it; the exporter-toolkit keys this endpoint does
//! not implement (`cert`, `key`, `client_ca`, `client_allowed_sans`) are refused with a message
//! saying so. Relative file names are relative to the configuration file's folder, as in
//! exporter-toolkit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue};
use rustls::crypto::{CryptoProvider, SupportedKxGroup, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme, SupportedCipherSuite,
    SupportedProtocolVersion,
};
use serde::Deserialize;

/// A web configuration file that cannot be used: its name and the problem.
#[derive(Debug, Clone, thiserror::Error)]
#[error("web config file {}: {problem}", file.display())]
pub struct WebConfigError {
    file: PathBuf,
    problem: String,
}

impl WebConfigError {
    fn new(file: &Path, problem: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            problem: problem.into(),
        }
    }

    /// The configuration file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// What is wrong with it.
    pub fn problem(&self) -> &str {
        &self.problem
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    tls_server_config: Option<RawTls>,
    #[serde(default)]
    http_server_config: Option<RawHttp>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[serde(default)]
    cert_file: Option<String>,
    #[serde(default)]
    key_file: Option<String>,
    #[serde(default)]
    client_auth_type: Option<String>,
    #[serde(default)]
    client_ca_file: Option<String>,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    max_version: Option<String>,
    #[serde(default)]
    cipher_suites: Option<Vec<String>>,
    #[serde(default)]
    curve_preferences: Option<Vec<String>>,
    #[serde(default)]
    prefer_server_cipher_suites: Option<bool>,
    // exporter-toolkit keys refused with a message of their own.
    #[serde(default)]
    cert: Option<serde_norway::Value>,
    #[serde(default)]
    key: Option<serde_norway::Value>,
    #[serde(default)]
    client_ca: Option<serde_norway::Value>,
    #[serde(default)]
    client_allowed_sans: Option<serde_norway::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    http2: Option<bool>,
}

/// The parsed contents of a web configuration file; give it to
/// [`ExporterBuilder::web_config`](crate::ExporterBuilder::web_config), or name the file with
/// [`ExporterBuilder::web_config_file`](crate::ExporterBuilder::web_config_file).
#[derive(Debug, Clone)]
pub struct WebConfig {
    file: PathBuf,
    pub(crate) tls: Option<TlsSettings>,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    /// User name → bcrypt hash.
    pub(crate) users: BTreeMap<String, String>,
}

/// How a client certificate is asked for (Go's `tls.ClientAuthType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientAuth {
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

/// The TLS half of a web configuration: the files to read and the protocol settings.
#[derive(Debug, Clone)]
pub(crate) struct TlsSettings {
    pub(crate) cert_file: PathBuf,
    pub(crate) key_file: PathBuf,
    pub(crate) client_ca_file: Option<PathBuf>,
    client_auth: ClientAuth,
    versions: Vec<&'static SupportedProtocolVersion>,
    provider: Arc<CryptoProvider>,
    ignore_client_order: bool,
}

/// The TLS 1.2 suites rustls' ring provider has, by their Go names (Go accepts the short
/// ChaCha20 names too).
const TLS12_SUITES: [(&str, SupportedCipherSuite); 8] = {
    use rustls::crypto::ring::cipher_suite::*;
    [
        (
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
            TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
        (
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ),
        (
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        ),
        (
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
        (
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
            TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
    ]
};

/// The headers `http_server_config.headers` may set, with the values allowed (none listed: any).
const ALLOWED_HEADERS: [(&str, &[&str]); 5] = [
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

impl WebConfig {
    /// Reads and checks a web configuration file, certificates and keys included (a key that
    /// does not match its certificate is an error here, not at the first connection).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, WebConfigError> {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).map_err(|e| WebConfigError::new(path, format!("cannot read it: {e}")))?;
        Self::from_yaml(&text, path)
    }

    /// Parses web configuration YAML; `file` names it in errors, and relative file names in it
    /// are relative to `file`'s folder. The certificate files are read and checked.
    pub fn from_yaml(yaml: &str, file: impl AsRef<Path>) -> Result<Self, WebConfigError> {
        let file = file.as_ref();
        let err = |problem: String| WebConfigError::new(file, problem);
        let raw: Option<RawConfig> =
            serde_norway::from_str(yaml).map_err(|e| err(format!("not a valid web configuration: {e}")))?;
        let raw = raw.unwrap_or_default();
        let dir = file.parent().unwrap_or(Path::new(""));
        let tls = match raw.tls_server_config {
            Some(t) => tls_settings(t, dir).map_err(err)?,
            None => None,
        };
        let mut headers = Vec::new();
        if let Some(http) = raw.http_server_config {
            // `http2` is accepted for compatibility; the endpoint speaks HTTP/1.1 only.
            let _ = http.http2;
            for (name, value) in http.headers.unwrap_or_default() {
                headers.push(header(&name, &value).map_err(err)?);
            }
        }
        let users = raw.basic_auth_users.unwrap_or_default();
        for (user, hash) in &users {
            if user.contains(':') {
                return Err(err(format!(
                    "basic_auth_users: user name `{user}` contains `:`, which basic auth cannot carry"
                )));
            }
            hash.parse::<bcrypt::HashParts>().map_err(|e| {
                err(format!(
                    "basic_auth_users: the hash of `{user}` is not a bcrypt hash ($2y$10$..., made with \
                     `htpasswd -nbBC 10 USER PASSWORD`): {e}"
                ))
            })?;
        }
        let config = Self {
            file: file.to_owned(),
            tls,
            headers,
            users,
        };
        if let Some(tls) = &config.tls {
            tls.server_config().map_err(err)?;
        }
        Ok(config)
    }

    /// The file it was read from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Whether the endpoint serves TLS.
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether requests need basic-auth credentials.
    pub fn basic_auth(&self) -> bool {
        !self.users.is_empty()
    }

    pub(crate) fn error(&self, problem: impl Into<String>) -> WebConfigError {
        WebConfigError::new(&self.file, problem)
    }
}

fn header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let allowed: Vec<&str> = ALLOWED_HEADERS.iter().map(|(n, _)| *n).collect();
    let Some((canonical, values)) = ALLOWED_HEADERS.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) else {
        return Err(format!(
            "http_server_config.headers: `{name}` cannot be configured; expected one of {allowed:?}"
        ));
    };
    if !values.is_empty() && !values.iter().any(|v| v.eq_ignore_ascii_case(value)) {
        return Err(format!(
            "http_server_config.headers: `{canonical}: {value}` is not allowed; expected one of {values:?}"
        ));
    }
    let value = HeaderValue::from_str(value).map_err(|e| {
        format!("http_server_config.headers: `{canonical}`: value `{value}` is not a header value: {e}")
    })?;
    Ok((HeaderName::from_static(lowercase(canonical)), value))
}

fn lowercase(canonical: &'static str) -> &'static str {
    match canonical {
        "Strict-Transport-Security" => "strict-transport-security",
        "X-Content-Type-Options" => "x-content-type-options",
        "X-Frame-Options" => "x-frame-options",
        "X-XSS-Protection" => "x-xss-protection",
        _ => "content-security-policy",
    }
}

fn version(key: &str, v: &str) -> Result<&'static SupportedProtocolVersion, String> {
    match v {
        "TLS12" => Ok(&rustls::version::TLS12),
        "TLS13" => Ok(&rustls::version::TLS13),
        "TLS10" | "TLS11" => Err(format!(
            "tls_server_config.{key}: {v} is not supported (rustls has TLS 1.2 and 1.3 only); expected TLS12 or TLS13"
        )),
        _ => Err(format!(
            "tls_server_config.{key}: `{v}` is not a TLS version; expected TLS12 or TLS13"
        )),
    }
}

fn tls_settings(t: RawTls, dir: &Path) -> Result<Option<TlsSettings>, String> {
    for (key, value, instead) in [
        ("cert", &t.cert, "cert_file"),
        ("key", &t.key, "key_file"),
        ("client_ca", &t.client_ca, "client_ca_file"),
    ] {
        if value.is_some() {
            return Err(format!(
                "tls_server_config.{key} (inline PEM) is not supported; put it in a file named by {instead}"
            ));
        }
    }
    if t.client_allowed_sans.is_some() {
        return Err("tls_server_config.client_allowed_sans is not supported".into());
    }
    let path = |s: &Option<String>| s.as_deref().filter(|s| !s.is_empty()).map(|s| dir.join(s));
    let (cert_file, key_file) = match (path(&t.cert_file), path(&t.key_file)) {
        (Some(c), Some(k)) => (c, k),
        // exporter-toolkit: no certificate and no key is plain HTTP.
        (None, None) if t.client_ca_file.is_none() && t.client_auth_type.is_none() => return Ok(None),
        (None, _) => return Err("tls_server_config: missing cert_file".into()),
        (_, None) => return Err("tls_server_config: missing key_file".into()),
    };
    let client_auth = match t.client_auth_type.as_deref().unwrap_or("NoClientCert") {
        "" | "NoClientCert" => ClientAuth::NoClientCert,
        "RequestClientCert" => ClientAuth::RequestClientCert,
        "RequireAnyClientCert" => ClientAuth::RequireAnyClientCert,
        "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
        "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
        other => {
            return Err(format!(
                "tls_server_config.client_auth_type: `{other}` is not a client auth type; expected NoClientCert, \
                 RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
            ))
        }
    };
    let client_ca_file = path(&t.client_ca_file);
    match (client_auth, &client_ca_file) {
        (ClientAuth::NoClientCert, Some(_)) => {
            return Err(
                "tls_server_config: client_ca_file is set without a client_auth_type that verifies certificates \
                 (VerifyClientCertIfGiven or RequireAndVerifyClientCert)"
                    .into(),
            )
        }
        (ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert, None) => {
            return Err(format!(
                "tls_server_config: client_auth_type {client_auth:?} needs client_ca_file, the CAs client \
                 certificates are verified against"
            ))
        }
        _ => {}
    }
    let min = version("min_version", t.min_version.as_deref().unwrap_or("TLS12"))?;
    let max = version("max_version", t.max_version.as_deref().unwrap_or("TLS13"))?;
    let rank = |v: &SupportedProtocolVersion| u16::from(v.version);
    if rank(min) > rank(max) {
        return Err("tls_server_config: min_version is above max_version".into());
    }
    let versions: Vec<_> = [&rustls::version::TLS12, &rustls::version::TLS13]
        .into_iter()
        .filter(|v| rank(v) >= rank(min) && rank(v) <= rank(max))
        .collect();
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(names) = t.cipher_suites.filter(|n| !n.is_empty()) {
        let mut suites: Vec<SupportedCipherSuite> = Vec::new();
        for name in &names {
            let Some((_, suite)) = TLS12_SUITES.iter().find(|(n, _)| n == name) else {
                let known: Vec<&str> = TLS12_SUITES.iter().map(|(n, _)| *n).collect();
                return Err(format!(
                    "tls_server_config.cipher_suites: `{name}` is not a supported TLS 1.2 suite; expected some of \
                     {known:?} (TLS 1.3 suites are not configurable)"
                ));
            };
            if !suites.contains(suite) {
                suites.push(*suite);
            }
        }
        suites.extend(
            provider
                .cipher_suites
                .iter()
                .filter(|s| matches!(s, SupportedCipherSuite::Tls13(_))),
        );
        provider.cipher_suites = suites;
    }
    if let Some(names) = t.curve_preferences.filter(|n| !n.is_empty()) {
        use rustls::crypto::ring::kx_group;
        let mut groups: Vec<&'static dyn SupportedKxGroup> = Vec::new();
        for name in &names {
            groups.push(match name.as_str() {
                "X25519" => kx_group::X25519,
                "CurveP256" => kx_group::SECP256R1,
                "CurveP384" => kx_group::SECP384R1,
                _ => {
                    return Err(format!(
                        "tls_server_config.curve_preferences: `{name}` is not supported; expected some of \
                         X25519, CurveP256, CurveP384"
                    ))
                }
            });
        }
        provider.kx_groups = groups;
    }
    Ok(Some(TlsSettings {
        cert_file,
        key_file,
        client_ca_file,
        client_auth,
        versions,
        provider: Arc::new(provider),
        // Go has ignored `prefer_server_cipher_suites` since 1.17 and always picks itself; the
        // key keeps its meaning here.
        ignore_client_order: t.prefer_server_cipher_suites.unwrap_or(true),
    }))
}

impl TlsSettings {
    /// The files whose change means the configuration must be built again.
    pub(crate) fn files(&self) -> impl Iterator<Item = &Path> {
        [&self.cert_file, &self.key_file]
            .into_iter()
            .map(PathBuf::as_path)
            .chain(self.client_ca_file.as_deref())
    }

    /// Reads the certificate, key and client CA files and builds the rustls configuration.
    pub(crate) fn server_config(&self) -> Result<Arc<ServerConfig>, String> {
        let read = |key: &str, path: &Path| {
            std::fs::read(path).map_err(|e| format!("tls_server_config.{key} {}: cannot read it: {e}", path.display()))
        };
        let cert_pem = read("cert_file", &self.cert_file)?;
        let certs = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("tls_server_config.cert_file {}: {e}", self.cert_file.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "tls_server_config.cert_file {}: expected PEM certificates (-----BEGIN CERTIFICATE-----), found none",
                self.cert_file.display()
            ));
        }
        let key_pem = read("key_file", &self.key_file)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            format!(
                "tls_server_config.key_file {}: expected a PEM private key: {e}",
                self.key_file.display()
            )
        })?;
        let builder = ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_protocol_versions(&self.versions)
            .map_err(|e| format!("tls_server_config: {e}"))?;
        let algs = self.provider.signature_verification_algorithms;
        let builder = match self.client_auth {
            ClientAuth::NoClientCert => builder.with_no_client_auth(),
            ClientAuth::RequestClientCert | ClientAuth::RequireAnyClientCert => {
                builder.with_client_cert_verifier(Arc::new(AnyClientCert {
                    mandatory: self.client_auth == ClientAuth::RequireAnyClientCert,
                    algs,
                }))
            }
            ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert => {
                let path = self.client_ca_file.as_deref().expect("checked at parse");
                let pem = read("client_ca_file", path)?;
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|e| format!("tls_server_config.client_ca_file {}: {e}", path.display()))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("tls_server_config.client_ca_file {}: {e}", path.display()))?;
                }
                if roots.is_empty() {
                    return Err(format!(
                        "tls_server_config.client_ca_file {}: expected PEM certificates, found none",
                        path.display()
                    ));
                }
                let mut verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&self.provider));
                if self.client_auth == ClientAuth::VerifyClientCertIfGiven {
                    verifier = verifier.allow_unauthenticated();
                }
                let verifier = verifier
                    .build()
                    .map_err(|e| format!("tls_server_config.client_ca_file {}: {e}", path.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(certs, key).map_err(|e| {
            format!(
                "tls_server_config: key_file {} does not go with cert_file {}: {e}",
                self.key_file.display(),
                self.cert_file.display()
            )
        })?;
        config.ignore_client_order = self.ignore_client_order;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// `RequestClientCert` and `RequireAnyClientCert`: any certificate is taken (Go does not verify
/// it either), but the client must still prove it holds the certificate's key.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<WebConfig, String> {
        WebConfig::from_yaml(yaml, "/nonexistent/web.yml").map_err(|e| e.to_string())
    }

    #[test]
    fn empty_and_auth_only() {
        let c = parse("").unwrap();
        assert!(!c.tls() && !c.basic_auth());
        let c = parse("# nothing\n").unwrap();
        assert!(!c.tls());
        let hash = bcrypt::hash("secret", 4).unwrap();
        let c = parse(&format!("basic_auth_users:\n  alice: {hash}\n")).unwrap();
        assert!(c.basic_auth() && !c.tls());
        let c = parse("tls_server_config:\n  cert_file: ''\n  key_file: ''\n").unwrap();
        assert!(!c.tls(), "no certificate and no key is plain HTTP");
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let e = parse("tls_server_config:\n  cert_file: a\n  keyfile: b\n").unwrap_err();
        assert!(e.contains("/nonexistent/web.yml") && e.contains("keyfile"), "{e}");
        let e = parse("basic_auth_user:\n  a: b\n").unwrap_err();
        assert!(e.contains("basic_auth_user"), "{e}");
        let e = parse("tls_server_config: [\n").unwrap_err();
        assert!(e.contains("not a valid web configuration"), "{e}");
        let e = parse("tls_server_config:\n  cert_file: a\n").unwrap_err();
        assert!(e.contains("missing key_file"), "{e}");
        let e = parse("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS11\n").unwrap_err();
        assert!(e.contains("min_version") && e.contains("TLS11"), "{e}");
        let e =
            parse("tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n")
                .unwrap_err();
        assert!(e.contains("TLS_RSA_WITH_RC4_128_SHA"), "{e}");
        let e = parse("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Maybe\n").unwrap_err();
        assert!(e.contains("`Maybe`"), "{e}");
        let e = parse(
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n",
        )
        .unwrap_err();
        assert!(e.contains("needs client_ca_file"), "{e}");
        let e = parse("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n").unwrap_err();
        assert!(e.contains("without a client_auth_type"), "{e}");
        let e = parse("tls_server_config:\n  cert_file: a\n  key_file: b\n").unwrap_err();
        assert!(e.contains("/nonexistent/a") && e.contains("cannot read"), "{e}");
        let e = parse("basic_auth_users:\n  alice: plaintext\n").unwrap_err();
        assert!(e.contains("alice") && e.contains("bcrypt"), "{e}");
        let e = parse("http_server_config:\n  headers:\n    Server: x\n").unwrap_err();
        assert!(e.contains("`Server` cannot be configured"), "{e}");
        let e = parse("http_server_config:\n  headers:\n    X-Frame-Options: allow\n").unwrap_err();
        assert!(e.contains("not allowed"), "{e}");
        let e = parse("tls_server_config:\n  cert: abc\n").unwrap_err();
        assert!(e.contains("cert (inline PEM) is not supported"), "{e}");
    }

    #[test]
    fn headers_and_http2() {
        let c = parse("http_server_config:\n  http2: false\n  headers:\n    x-frame-options: deny\n    Strict-Transport-Security: max-age=31536000\n").unwrap();
        let names: Vec<&str> = c.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["strict-transport-security", "x-frame-options"]);
    }
}

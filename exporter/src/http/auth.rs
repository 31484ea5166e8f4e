//! Basic auth with the bcrypt hashes of the web configuration's `basic_auth_users`, and its extra
//! response headers.
//!
//! bcrypt is slow on purpose (about 50 ms at cost 10), so a good password is checked with bcrypt
//! once and then remembered: each user keeps the SHA-256 of a per-process random salt, the user
//! and the last password that passed, compared in constant time. The cache holds one entry per
//! configured user, so it is bounded by the configuration. A wrong password, or an unknown user
//! (checked against a dummy hash of the same cost, so that an unknown name takes as long as a
//! known one), costs a bcrypt run on the blocking pool, one at a time, so the exporter thread and
//! `/health` never wait for it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

/// The credentials check.
pub(crate) struct BasicAuth {
    /// User name → bcrypt hash.
    users: BTreeMap<String, String>,
    /// User name → digest of the last password that passed bcrypt.
    passed: Mutex<HashMap<String, [u8; 32]>>,
    salt: [u8; 32],
    /// One bcrypt run at a time.
    bcrypt: Semaphore,
    /// A hash of the users' cost for unknown user names, made at the first one.
    dummy: OnceLock<String>,
    /// Whether `/health` needs credentials too.
    protect_health: bool,
    /// How long a request may wait for its bcrypt run before it is answered 503.
    wait: Duration,
}

enum Verdict {
    Pass,
    Deny,
    Busy,
}

impl BasicAuth {
    pub(crate) fn new(users: BTreeMap<String, String>, protect_health: bool, wait: Duration) -> Self {
        let mut salt = [0u8; 32];
        // The salt only keeps the digests in memory from being precomputed; a failure of the
        // system's random source leaves it zero, which makes them plain SHA-256.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt);
        Self {
            users,
            passed: Mutex::new(HashMap::new()),
            salt,
            bcrypt: Semaphore::new(1),
            dummy: OnceLock::new(),
            protect_health,
            wait,
        }
    }

    fn digest(&self, user: &str, password: &[u8]) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&self.salt);
        ctx.update(&(user.len() as u64).to_le_bytes());
        ctx.update(user.as_bytes());
        ctx.update(password);
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    async fn check(self: &Arc<Self>, authorization: Option<&HeaderValue>) -> Verdict {
        let Some((user, password)) = authorization.and_then(credentials) else {
            return Verdict::Deny;
        };
        let digest = self.digest(&user, &password);
        let known = self.users.get(&user).cloned();
        if known.is_some() {
            let passed = self.passed.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(good) = passed.get(&user) {
                if bool::from(good.ct_eq(&digest)) {
                    return Verdict::Pass;
                }
            }
        }
        let run = async {
            let _permit = self.bcrypt.acquire().await.ok()?;
            let me = Arc::clone(self);
            tokio::task::spawn_blocking(move || match known {
                Some(hash) => bcrypt::verify(&password, &hash).unwrap_or(false),
                None => {
                    let dummy = me.dummy.get_or_init(|| {
                        let cost = me
                            .users
                            .values()
                            .find_map(|h| h.parse::<bcrypt::HashParts>().ok())
                            .map_or(bcrypt::DEFAULT_COST, |p| p.get_cost());
                        bcrypt::hash("", cost).unwrap_or_default()
                    });
                    let _ = bcrypt::verify(&password, dummy);
                    false
                }
            })
            .await
            .ok()
        };
        match tokio::time::timeout(self.wait, run).await {
            Ok(Some(true)) => {
                self.passed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(user, digest);
                Verdict::Pass
            }
            Ok(Some(false)) => Verdict::Deny,
            Ok(None) | Err(_) => Verdict::Busy,
        }
    }
}

/// The user and password of a `Basic` authorization header.
fn credentials(value: &HeaderValue) -> Option<(String, Vec<u8>)> {
    let value = value.to_str().ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

/// The middleware: every request needs good credentials, `/health` too when so configured.
pub(crate) async fn authenticate(State(auth): State<Arc<BasicAuth>>, request: Request, next: Next) -> Response {
    if !auth.protect_health && request.uri().path() == "/health" {
        return next.run(request).await;
    }
    match auth.check(request.headers().get(header::AUTHORIZATION)).await {
        Verdict::Pass => next.run(request).await,
        Verdict::Deny => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic")],
            "Unauthorized\n",
        )
            .into_response(),
        Verdict::Busy => (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many credential checks waiting; retry later\n",
        )
            .into_response(),
    }
}

/// Adds the web configuration's `http_server_config.headers` to every response.
pub(crate) async fn add_headers(
    State(headers): State<Arc<Vec<(HeaderName, HeaderValue)>>>,
    mut response: Response,
) -> Response {
    for (name, value) in headers.iter() {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials() {
        let v = |s: &str| HeaderValue::from_str(s).unwrap();
        // "alice:pa:ss"
        assert_eq!(
            credentials(&v("Basic YWxpY2U6cGE6c3M=")),
            Some(("alice".to_owned(), b"pa:ss".to_vec()))
        );
        assert_eq!(
            credentials(&v("basic YWxpY2U6")),
            Some(("alice".to_owned(), Vec::new()))
        );
        assert_eq!(credentials(&v("Bearer YWxpY2U6cGE6c3M=")), None);
        assert_eq!(credentials(&v("Basic !!!")), None);
        assert_eq!(credentials(&v("Basic YWxpY2U=")), None, "no colon");
    }

    #[tokio::test]
    async fn cached_after_one_bcrypt() {
        let hash = bcrypt::hash("right", 4).unwrap();
        let auth = Arc::new(BasicAuth::new(
            BTreeMap::from([("alice".to_owned(), hash)]),
            false,
            Duration::from_secs(30),
        ));
        let header = |u: &str, p: &str| {
            let b = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            HeaderValue::from_str(&format!("Basic {b}")).unwrap()
        };
        assert!(matches!(
            auth.check(Some(&header("alice", "right"))).await,
            Verdict::Pass
        ));
        assert_eq!(auth.passed.lock().unwrap().len(), 1);
        assert!(matches!(
            auth.check(Some(&header("alice", "right"))).await,
            Verdict::Pass
        ));
        assert!(matches!(
            auth.check(Some(&header("alice", "wrong"))).await,
            Verdict::Deny
        ));
        assert!(matches!(auth.check(Some(&header("bob", "right"))).await, Verdict::Deny));
        assert!(matches!(auth.check(None).await, Verdict::Deny));
        assert_eq!(auth.passed.lock().unwrap().len(), 1, "only configured users are cached");
    }
}

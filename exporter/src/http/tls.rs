//! TLS on the endpoint: the rustls configuration built from the web configuration's
//! `tls_server_config`, and built again when its certificate, key or client CA file changes, so a
//! rotation job's new files take effect without a restart (exporter-toolkit reads them at every
//! handshake; here a new connection stats them, and reads them only when one changed).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use rustls::ServerConfig;

use super::web_config::TlsSettings;

/// A file's modification time and length; `None` when it cannot be stat'ed.
type Stamp = Option<(SystemTime, u64)>;

/// The TLS settings and the rustls configuration of the files as they were last read.
pub(crate) struct Tls {
    settings: TlsSettings,
    /// The web configuration file, for the log.
    file: PathBuf,
    state: Mutex<State>,
}

struct State {
    /// The files' stamps when `config` was built.
    built: Vec<Stamp>,
    config: Arc<ServerConfig>,
    /// The stamps of files that failed to build, so a bad file is read and logged once, not at
    /// every connection.
    failed: Option<Vec<Stamp>>,
}

impl Tls {
    /// Reads the files and builds the configuration.
    pub(crate) fn new(settings: TlsSettings, file: PathBuf) -> Result<Self, String> {
        let built = stamps(&settings);
        let config = settings.server_config()?;
        Ok(Self {
            settings,
            file,
            state: Mutex::new(State {
                built,
                config,
                failed: None,
            }),
        })
    }

    /// The configuration for a new connection. When a file changed since the last build it is
    /// built again; if that fails the previous configuration stays and the error is logged once
    /// per change of the files.
    pub(crate) fn config(&self) -> Arc<ServerConfig> {
        let now = stamps(&self.settings);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if now == state.built || state.failed.as_ref() == Some(&now) {
            return Arc::clone(&state.config);
        }
        match self.settings.server_config() {
            Ok(config) => {
                tracing::info!(
                    "web config file {}: certificate files changed; new connections use the new ones",
                    self.file.display()
                );
                state.config = config;
                state.built = now;
                state.failed = None;
            }
            Err(e) => {
                tracing::error!(
                    "web config file {}: {e}; new connections keep the previous certificate until the files are fixed",
                    self.file.display()
                );
                state.failed = Some(now);
            }
        }
        Arc::clone(&state.config)
    }
}

fn stamps(settings: &TlsSettings) -> Vec<Stamp> {
    settings
        .files()
        .map(|path| {
            let m = std::fs::metadata(path).ok()?;
            Some((m.modified().ok()?, m.len()))
        })
        .collect()
}

//! The address allowlist ([`ExporterBuilder::add_allowed_address`](super::ExporterBuilder::add_allowed_address)):
//! a connection from an address outside every allowed network gets 403 on every path, `/health`
//! included, before basic auth is asked for, as metrics-exporter-prometheus' listener answers.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;

/// The networks a client's address must be in.
#[derive(Debug, Clone, Default)]
pub(crate) struct Allowlist(Vec<IpNet>);

impl Allowlist {
    /// Adds `address`: a network (`10.0.0.0/8`, `fd00::/8`) or one address (`192.0.2.7`, `::1`).
    pub(crate) fn add(&mut self, address: &str) -> Result<(), String> {
        let net = IpNet::from_str(address)
            .or_else(|_| IpAddr::from_str(address).map(IpNet::from))
            .map_err(|_| {
                format!("allowed address {address:?}: expected an IP address (192.0.2.7, ::1) or a network (10.0.0.0/8, fd00::/8)")
            })?;
        self.0.push(net);
        Ok(())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is in an allowed network. An IPv4 client of a dual-stack listener arrives as
    /// `::ffff:a.b.c.d` and is matched as `a.b.c.d`.
    pub(crate) fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }
}

/// The middleware: 403 for a client outside the allowlist (or one whose address is unknown).
pub(crate) async fn allow(State(list): State<Arc<Allowlist>>, request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    match peer {
        Some(ip) if list.allows(ip) => next.run(request).await,
        _ => {
            tracing::debug!("mmo-metrics exporter: {peer:?} is not in the allowed addresses: 403");
            (StatusCode::FORBIDDEN, "Forbidden\n").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_single_addresses_and_mapped_clients() {
        let mut list = Allowlist::default();
        for a in ["10.0.0.0/8", "192.0.2.7", "fd00::/8", "::1"] {
            list.add(a).unwrap();
        }
        let ip = |s: &str| IpAddr::from_str(s).unwrap();
        for allowed in ["10.1.2.3", "192.0.2.7", "::ffff:10.9.9.9", "fd12::1", "::1"] {
            assert!(list.allows(ip(allowed)), "{allowed}");
        }
        for refused in ["11.0.0.1", "192.0.2.8", "127.0.0.1", "fe80::1", "::ffff:127.0.0.1"] {
            assert!(!list.allows(ip(refused)), "{refused}");
        }
        for bad in ["", "10.0.0.0/33", "localhost", "10.0.0"] {
            let e = list.add(bad).unwrap_err();
            assert!(
                e.contains(&format!("{bad:?}")) && e.contains("expected an IP address"),
                "{e}"
            );
        }
    }
}

//! Connecting to the server: the URL (with `user:pass@` or `token@` in it), a
//! credentials file, TLS files; and the module's own runtime.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};

use crate::error::{Error, ErrorKind};

/// Where the NATS server is and how to authenticate to it.
#[derive(Debug, Clone, Default)]
pub struct Connect {
    /// `nats://[user:pass@|token@]host:port` (several, comma-separated, for a cluster).
    pub url: String,
    /// A credentials file (`.creds`: a user JWT and its nkey seed).
    pub creds: Option<PathBuf>,
    /// CA certificates to trust (PEM), for a server whose certificate they sign.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate and key (PEM), for a server that asks for one.
    pub tls_cert: Option<(PathBuf, PathBuf)>,
    /// Refuse a connection that is not TLS.
    pub tls_required: bool,
}

impl Connect {
    /// The server at `url`, no other option.
    pub fn new(url: impl Into<String>) -> Connect {
        Connect {
            url: url.into(),
            ..Connect::default()
        }
    }

    /// The URL without its credentials (for messages).
    pub(crate) fn shown(&self) -> String {
        self.url
            .split(',')
            .map(|u| match (u.find("://"), u.rfind('@')) {
                (Some(s), Some(at)) if at > s => format!("{}{}", &u[..s + 3], &u[at + 1..]),
                (None, Some(at)) => u[at + 1..].to_string(),
                _ => u.to_string(),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    pub(crate) async fn client(&self, name: &str) -> Result<async_nats::Client, Error> {
        let fail = |what: String, e: Box<dyn std::error::Error + Send + Sync>| -> Error {
            ErrorKind::Cluster {
                what,
                source: Some(e),
            }
            .into()
        };
        let shown = self.shown();
        let mut options = async_nats::ConnectOptions::new()
            .name(name)
            .connection_timeout(std::time::Duration::from_secs(5))
            // The client asks with 1 for its first try (also the first connect): that
            // one goes at once; each later one waits 250 ms more, up to the max.
            .reconnect_delay_callback(|attempts| {
                let step = std::time::Duration::from_millis(250);
                let waits = attempts.saturating_sub(1).min(16) as u32;
                (step * waits).min(super::defaults::RECONNECT_DELAY_MAX)
            });
        if let Some(path) = &self.creds {
            options = options.credentials_file(path).await.map_err(|e| {
                fail(
                    format!("cannot read the NATS credentials file {}", path.display()),
                    Box::new(e),
                )
            })?;
        }
        // The first URL's user info: `user:pass@` or `token@`.
        let first = self.url.split(',').next().unwrap_or_default();
        let rest = first.split_once("://").map_or(first, |(_, r)| r);
        if let Some((auth, _)) = rest.rsplit_once('@') {
            options = match auth.split_once(':') {
                Some((user, pass)) => options.user_and_password(unescape(user), unescape(pass)),
                None => options.token(unescape(auth)),
            };
        }
        if let Some(ca) = &self.tls_ca {
            options = options.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &self.tls_cert {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        if self.tls_required {
            options = options.require_tls(true);
        }
        let urls: Vec<String> = self.shown().split(',').map(str::to_string).collect();
        let addrs: Vec<async_nats::ServerAddr> = urls
            .iter()
            .map(|u| u.parse())
            .collect::<Result<_, _>>()
            .map_err(|e| fail(format!("`{shown}` is not a NATS server URL"), Box::new(e)))?;
        options.connect(addrs).await.map_err(|e| {
            fail(
                format!("cannot connect to the NATS server at {shown}"),
                Box::new(e),
            )
        })
    }
}

/// Whether connecting failed for a reason that may pass by itself (the server not up
/// yet, the network away), not one that needs the operator (credentials, TLS, a URL).
pub(crate) fn transient(e: &Error) -> bool {
    use async_nats::ConnectErrorKind as K;
    let ErrorKind::Cluster {
        source: Some(source),
        ..
    } = e.kind()
    else {
        return false;
    };
    source
        .downcast_ref::<async_nats::ConnectError>()
        .is_some_and(|c| matches!(c.kind(), K::Io | K::TimedOut | K::Dns | K::MaxReconnects))
}

/// `%XX` escapes of a URL's user info.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 3 <= bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The module's runtime (two threads), shared by whoever uses it at the moment and
/// gone (threads, descriptors) when the last user lets go of it. Not for use from
/// inside another runtime: call the cluster API from a thread.
pub(crate) fn runtime() -> Result<Arc<tokio::runtime::Runtime>, Error> {
    static RUNTIME: Mutex<Weak<tokio::runtime::Runtime>> = Mutex::new(Weak::new());
    let mut current = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(rt) = current.upgrade() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("supervisor-nats")
        .enable_all()
        .build()
        .map_err(|e| cluster("cannot start the cluster runtime", e))?;
    let rt = Arc::new(rt);
    *current = Arc::downgrade(&rt);
    Ok(rt)
}

/// An async-nats error as a catalogue error.
pub(crate) fn cluster(
    what: impl Into<String>,
    e: impl std::error::Error + Send + Sync + 'static,
) -> Error {
    ErrorKind::Cluster {
        what: what.into(),
        source: Some(Box::new(e)),
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_not_shown() {
        assert_eq!(Connect::new("nats://u:p@h:4222").shown(), "nats://h:4222");
        assert_eq!(
            Connect::new("nats://tok@h:1,nats://h2:2").shown(),
            "nats://h:1,nats://h2:2"
        );
        assert_eq!(Connect::new("h:4222").shown(), "h:4222");
        assert_eq!(unescape("a%40b"), "a@b");
    }
}

//! The cluster over TLS: a real nats-server that speaks only TLS, with a certificate
//! from a certificate authority made by the test (rcgen), and real agents and
//! submitters given `--tls-ca` (and, where the server verifies clients, `--tls-cert`
//! and `--tls-key`).

#![cfg(feature = "cluster")]

mod cluster_support;
mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use cluster_support::{supervisor, Agent, Server};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

const DEADLINE: Duration = Duration::from_secs(120);

/// PEM files of a test authority, a server certificate for 127.0.0.1 and a client
/// certificate, in a temporary directory removed on drop.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        for (who, names) in [
            ("server", vec!["127.0.0.1".to_string()]),
            ("client", vec![]),
        ] {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(names)
                .unwrap()
                .signed_by(&key, &ca)
                .unwrap();
            std::fs::write(dir.join(format!("{who}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.join(format!("{who}-key.pem")), key.serialize_pem()).unwrap();
        }
        Pki { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tls_url(server: &Server) -> String {
    format!("tls://127.0.0.1:{}", server.port)
}

fn exists(p: &str) -> bool {
    Path::new(p).is_file()
}

/// A server that speaks only TLS: a submitter that does not trust its authority is
/// refused with exit 2 and a message naming the server and the cause, once; with `--tls-ca` the agent and
/// the submitter connect and the run prints what a local run prints.
#[test]
fn a_tls_only_server_is_used_with_its_authority_and_refused_without_it() {
    common::isolated(DEADLINE, || {
        let pki = Pki::new("server");
        let (cert, key, ca) = (
            pki.path("server.pem"),
            pki.path("server-key.pem"),
            pki.path("ca.pem"),
        );
        assert!(exists(&cert) && exists(&key) && exists(&ca));
        let server = Server::start(&["--tls", "--tlscert", &cert, "--tlskey", &key]);
        let url = tls_url(&server);
        let untrusted = supervisor(&["run", "--nats", &url, "--task", "prime-factors"], b"12\n");
        assert_eq!(untrusted.code, Some(2), "{}", untrusted.stderr);
        assert!(
            untrusted
                .stderr
                .contains(&format!("cannot connect to the NATS server at {url}")),
            "{}",
            untrusted.stderr
        );
        // The client's cause, said once (async-nats repeats its source in its message).
        assert_eq!(
            untrusted.stderr.matches("UnknownIssuer").count(),
            1,
            "{}",
            untrusted.stderr
        );
        let agent = Agent::start(&url, "a", 2, &["--tls-ca", &ca]);
        let input = b"12\n30\n97\n";
        let local = supervisor(&["run", "--task", "prime-factors"], input);
        let remote = supervisor(
            &[
                "run",
                "--nats",
                &url,
                "--tls-ca",
                &ca,
                "--task",
                "prime-factors",
            ],
            input,
        );
        assert_eq!(remote.code, Some(0), "{}", remote.stderr);
        assert_eq!(remote.stdout, local.stdout);
        assert_eq!(remote.stdout, b"2 2 3\n2 3 5\n97\n");
        let listed = supervisor(&["workers", "--nats", &url, "--tls-ca", &ca], b"");
        assert_eq!(listed.code, Some(0), "{}", listed.stderr);
        assert!(
            String::from_utf8_lossy(&listed.stdout).contains('a'),
            "{}",
            String::from_utf8_lossy(&listed.stdout)
        );
        drop(agent);
    });
}

/// A server that verifies its clients' certificates: a submitter with the authority
/// but no certificate of its own is refused (exit 2); with `--tls-cert` and
/// `--tls-key` (and `--tls-required`) it runs.
#[test]
fn a_server_that_verifies_clients_takes_only_those_with_a_certificate() {
    common::isolated(DEADLINE, || {
        let pki = Pki::new("mutual");
        let (cert, key, ca) = (
            pki.path("server.pem"),
            pki.path("server-key.pem"),
            pki.path("ca.pem"),
        );
        let (client, client_key) = (pki.path("client.pem"), pki.path("client-key.pem"));
        let server = Server::start(&[
            "--tlsverify",
            "--tlscert",
            &cert,
            "--tlskey",
            &key,
            "--tlscacert",
            &ca,
        ]);
        let url = tls_url(&server);
        let anonymous = supervisor(
            &[
                "run",
                "--nats",
                &url,
                "--tls-ca",
                &ca,
                "--task",
                "prime-factors",
            ],
            b"12\n",
        );
        assert_eq!(anonymous.code, Some(2), "{}", anonymous.stderr);
        assert!(
            anonymous
                .stderr
                .contains("cannot connect to the NATS server"),
            "{}",
            anonymous.stderr
        );
        let tls = [
            "--tls-ca",
            ca.as_str(),
            "--tls-cert",
            client.as_str(),
            "--tls-key",
            client_key.as_str(),
            "--tls-required",
        ];
        let agent = Agent::start(&url, "a", 1, &tls);
        let ok = supervisor(
            &[
                &["run", "--nats", &url][..],
                &tls,
                &["--task", "prime-factors"],
            ]
            .concat(),
            b"12\n",
        );
        assert_eq!(ok.code, Some(0), "{}", ok.stderr);
        assert_eq!(ok.stdout, b"2 2 3\n");
        drop(agent);
    });
}

//! The cluster's security options against real servers: TLS (a server that speaks
//! only TLS, with a certificate from an authority the test makes with rcgen; agents and
//! submitters given `--tls-ca`, and `--tls-cert`/`--tls-key` where the server verifies
//! clients), and a credentials file (`--nats-creds`) for a server in operator mode
//! whose operator, account and user the test makes with nkeys.

#![cfg(feature = "cluster")]

mod cluster_support;
mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use cluster_support::{supervisor, Agent, Server};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use sha2::Digest as _;

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

    /// The server's certificate and key, and the authority's certificate.
    fn server_files(&self) -> (String, String, String) {
        let files = (
            self.path("server.pem"),
            self.path("server-key.pem"),
            self.path("ca.pem"),
        );
        assert!(Path::new(&files.0).is_file() && Path::new(&files.2).is_file());
        files
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A run with no credentials against the server at `url`: refused, exit 2, with a
/// message naming the server.
fn refused_run(url: &str) -> cluster_support::Out {
    let out = supervisor(&["run", "--nats", url, "--task", "prime-factors"], b"12\n");
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("cannot connect to the NATS server at {url}")),
        "{}",
        out.stderr
    );
    out
}

fn tls_url(server: &Server) -> String {
    format!("tls://127.0.0.1:{}", server.port)
}

/// A server that speaks only TLS: a submitter that does not trust its authority is
/// refused with exit 2 and a message naming the server and the cause, once; with
/// `--tls-ca` the agent and the submitter connect and the run prints what a local run
/// prints.
#[test]
fn a_tls_only_server_is_used_with_its_authority_and_refused_without_it() {
    common::isolated(DEADLINE, || {
        let pki = Pki::new("server");
        let (cert, key, ca) = pki.server_files();
        let server = Server::start(&["--tls", "--tlscert", &cert, "--tlskey", &key]);
        let url = tls_url(&server);
        let untrusted = refused_run(&url);
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
        let (cert, key, ca) = pki.server_files();
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

/// A NATS JWT (v2) for `claims` (`jti` and `iat` are filled in), signed by `issuer`.
fn jwt(issuer: &nkeys::KeyPair, mut claims: serde_json::Value) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    claims["iss"] = issuer.public_key().into();
    claims["iat"] = 1_700_000_000u64.into();
    claims["jti"] = "".into();
    let id = sha2::Sha256::digest(claims.to_string().as_bytes());
    claims["jti"] = data_encoding::BASE32_NOPAD.encode(&id).into();
    let header = b64.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = format!("{header}.{}", b64.encode(claims.to_string()));
    let signature = issuer.sign(body.as_bytes()).unwrap();
    format!("{body}.{}", b64.encode(signature))
}

/// An operator-mode server configuration (an operator, a system account and one
/// account with JetStream, preloaded) and a user's credentials file, in `dir`: (config, creds).
fn operator_mode(dir: &Path) -> (String, String) {
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let system = nkeys::KeyPair::new_account();
    let user = nkeys::KeyPair::new_user();
    let operator_jwt = jwt(
        &operator,
        serde_json::json!({"sub": operator.public_key(), "name": "op",
            "nats": {"type": "operator", "version": 2}}),
    );
    let unlimited = serde_json::json!({"subs": -1, "data": -1, "payload": -1,
        "imports": -1, "exports": -1, "wildcards": true, "conn": -1, "leaf": -1,
        "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1});
    let account_jwt = jwt(
        &operator,
        serde_json::json!({"sub": account.public_key(), "name": "acc",
            "nats": {"limits": unlimited, "type": "account", "version": 2}}),
    );
    let system_jwt = jwt(
        &operator,
        serde_json::json!({"sub": system.public_key(), "name": "SYS",
            "nats": {"limits": {"subs": -1, "data": -1, "payload": -1, "imports": -1,
                "exports": -1, "wildcards": true, "conn": -1, "leaf": -1},
                "type": "account", "version": 2}}),
    );
    let user_jwt = jwt(
        &account,
        serde_json::json!({"sub": user.public_key(), "name": "sv",
            "nats": {"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
                "type": "user", "version": 2}}),
    );
    let operator_file = dir.join("operator.jwt");
    std::fs::write(&operator_file, &operator_jwt).unwrap();
    let config = dir.join("server.conf");
    std::fs::write(
        &config,
        format!(
            "operator: \"{}\"\nsystem_account: {}\nresolver: MEMORY\n\
             resolver_preload: {{\n  {}: \"{}\"\n  {}: \"{}\"\n}}\n",
            operator_file.display(),
            system.public_key(),
            account.public_key(),
            account_jwt,
            system.public_key(),
            system_jwt
        ),
    )
    .unwrap();
    let creds = dir.join("user.creds");
    std::fs::write(
        &creds,
        format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
            user.seed().unwrap()
        ),
    )
    .unwrap();
    (config.display().to_string(), creds.display().to_string())
}

/// A server in operator mode (JWT users only): a submitter and an agent without a
/// credentials file are refused (exit 2); with `--nats-creds` they connect and the run
/// prints what a local run prints.
#[test]
fn a_credentials_file_is_the_credential_of_an_operator_mode_server() {
    common::isolated(DEADLINE, || {
        let pki = Pki::new("creds");
        let (config, creds) = operator_mode(&pki.dir);
        let server = Server::start(&["-c", &config]);
        let url = server.url();
        refused_run(&url);
        let refused = supervisor(&["worker", "--nats", &url], b"");
        assert_eq!(refused.code, Some(2), "{}", refused.stderr);
        let agent = Agent::start(&url, "a", 2, &["--nats-creds", &creds]);
        let input = b"12\n30\n97\n";
        let remote = supervisor(
            &[
                "run",
                "--nats",
                &url,
                "--nats-creds",
                &creds,
                "--task",
                "prime-factors",
            ],
            input,
        );
        assert_eq!(remote.code, Some(0), "{}", remote.stderr);
        assert_eq!(remote.stdout, b"2 2 3\n2 3 5\n97\n");
        drop(agent);
    });
}

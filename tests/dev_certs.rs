//! Development certificates through the real binary: a missing certificate
//! is a usage error that says how to make one; `wsguard dev-certs` and
//! `wsguard demo` make what is missing, keys private, and a client that
//! trusts only the new CA completes a TLS handshake with the demo.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::*;

/// Runs the wsguard binary to completion, within [`STEP`].
fn wsguard(args: &[&str], dir: &Path) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_wsguard"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wsguard starts");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(STEP) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            panic!("wsguard {args:?} did not exit within {STEP:?}");
        }
    }
}

const TLS_CONFIG: &str = "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"certs/localhost.crt\"\ntls_key = \"certs/localhost.key\"\n\n[origin]\nallow = [\"http://localhost:8080\"]\n\n[[route]]\npath = \"/chat\"\nbackends = [\"127.0.0.1:9\"]\n\n[demo]\nbackend_listen = \"127.0.0.1:0\"\npage_listen = \"127.0.0.1:0\"\n";

#[test]
fn a_missing_certificate_exits_64_and_says_how_to_make_it() {
    let dir = TempDir::new("missing-cert");
    std::fs::write(dir.0.join("wsguard.toml"), TLS_CONFIG).unwrap();
    for command in [&["check"][..], &[]] {
        let out = wsguard(&[command, &["--config", "wsguard.toml"]].concat(), &dir.0);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{command:?}: {stderr}");
        assert!(stderr.contains("certs/localhost.crt"), "{stderr}");
        assert!(stderr.contains("wsguard demo"), "{stderr}");
        assert!(stderr.contains("certs/regen.sh"), "{stderr}");
    }
    assert!(
        !dir.0.join("certs").exists(),
        "only demo makes certificates"
    );
}

#[cfg(feature = "demo")]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(feature = "demo")]
#[test]
fn dev_certs_makes_only_what_is_missing_and_force_makes_a_new_ca() {
    let dir = TempDir::new("dev-certs");
    let certs = dir.0.join("certs");
    let out = wsguard(&["dev-certs"], &dir.0);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for name in ["ca.key", "ca.crt", "localhost.key", "localhost.crt"] {
        assert!(stdout.contains(&format!("wrote certs/{name}")), "{stdout}");
    }
    assert!(stdout.contains("CA: certs/ca.crt: import it"), "{stdout}");
    assert_eq!(mode(&certs.join("ca.key")), 0o600);
    assert_eq!(mode(&certs.join("localhost.key")), 0o600);

    let ca = std::fs::read(certs.join("ca.crt")).unwrap();
    let out = wsguard(&["dev-certs", "--dir", "certs"], &dir.0);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to do"));
    assert_eq!(std::fs::read(certs.join("ca.crt")).unwrap(), ca);

    let out = wsguard(&["dev-certs", "--force"], &dir.0);
    assert!(out.status.success(), "{out:?}");
    assert_ne!(std::fs::read(certs.join("ca.crt")).unwrap(), ca);
}

#[cfg(feature = "demo")]
#[tokio::test]
async fn demo_makes_its_certificate_and_a_client_trusting_the_new_ca_connects() {
    let proc = Process::start_with(&["demo"], TLS_CONFIG);
    let addr = proc.addr().await;
    let certs = proc.config.parent().unwrap().join("certs");
    let made = proc.wait_log("demo: made development certificates").await;
    assert!(
        made["files"]
            .as_str()
            .unwrap()
            .contains(&certs.join("ca.key").display().to_string()),
        "{made}"
    );
    let trust = proc.wait_log("demo: the TLS certificate is signed").await;
    assert_eq!(
        trust["ca"].as_str(),
        Some(&*certs.join("ca.crt").display().to_string())
    );
    assert_eq!(mode(&certs.join("ca.key")), 0o600);
    assert_eq!(mode(&certs.join("localhost.key")), 0o600);

    let tcp = within("tcp connect", tokio::net::TcpStream::connect(addr))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let connector = tls_connector_trusting(&certs.join("ca.crt"));
    within("tls handshake", connector.connect(name, tcp))
        .await
        .expect("the demo's certificate verifies against the CA it made");
}

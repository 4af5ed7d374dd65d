//! The command line: check-config on the shipped examples and on broken files.

use std::path::Path;

use crate::harness::{repo_root, trunkgate};

fn check_config(path: &Path) -> (bool, String, String) {
    let path = path.to_str().expect("a UTF-8 path");
    let (code, stdout, stderr) = trunkgate(&["check-config", "--config", path]);
    (code == 0, stdout, stderr)
}

/// `trunkgate COMMAND --config` on a file holding `text`.
fn on_config(command: &str, text: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.toml");
    std::fs::write(&path, text).expect("write");
    let (code, stdout, stderr) = trunkgate(&[command, "--config", path.to_str().expect("UTF-8")]);
    (code == 0, stdout, stderr)
}

#[test]
fn shipped_configs_are_valid() {
    for name in ["trunkgate.toml", "demo.toml"] {
        let (ok, stdout, stderr) = check_config(&repo_root().join("conf").join(name));
        assert!(ok, "conf/{name} is invalid: {stderr}");
        assert!(stdout.contains(": ok: listen udp"), "{stdout}");
    }
}

#[test]
fn broken_config_lists_every_error_with_key_and_line() {
    let (ok, _, stderr) = on_config(
        "check-config",
        "[sip]\nrealm = \"\"\nmin_expires = 0\n\n[[trunks]]\nname = \"a\"\nauth_username = \"b\"\nha1 = \"xyz\"\n",
    );
    assert!(!ok);
    assert!(stderr.contains("3 errors"), "{stderr}");
    assert!(stderr.contains("line 2, column 1: sip.realm"), "{stderr}");
    assert!(
        stderr.contains("line 3, column 1: sip.min_expires"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 8, column 1: trunks[0].ha1"),
        "{stderr}"
    );
}

#[test]
fn unknown_key_and_missing_file_are_clear_errors() {
    let (ok, _, stderr) = on_config(
        "check-config",
        "[sip]\nrealm = \"r\"\nlisen = \"0.0.0.0:5060\"\n[[trunks]]\nname = \"a\"\nauth_username = \"b\"\npassword = \"p\"\n",
    );
    assert!(!ok);
    assert!(stderr.contains("line 3"), "{stderr}");
    assert!(stderr.contains("unknown field `lisen`"), "{stderr}");
    let dir = tempfile::tempdir().expect("tempdir");
    let (ok, _, stderr) = check_config(&dir.path().join("absent.toml"));
    assert!(!ok);
    assert!(stderr.contains("cannot read"), "{stderr}");
}

#[test]
fn run_with_an_unbindable_address_exits_with_a_clear_error() {
    // the port is held by this test, so the daemon's bind fails
    let holder = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let taken = holder.local_addr().expect("addr");
    let (ok, _, stderr) = on_config(
        "run",
        &format!("[sip]\nrealm = \"r\"\nlisten = \"{taken}\"\n[[trunks]]\nname = \"a\"\nauth_username = \"b\"\npassword = \"p\"\n"),
    );
    assert!(!ok);
    assert!(
        stderr.contains(&format!("cannot bind SIP socket udp {taken} (sip.listen)")),
        "{stderr}"
    );
}

//! The admin commands: `credentials` issues a password whose block makes a working trunk (checked
//! with check-config and a sipp REGISTER against the daemon), and `pbx-config 3cx|asterisk`
//! prints the config's values, with secrets only where the PBX needs them.

use std::path::Path;
use std::time::Duration;

use md5::{Digest, Md5};
use sha2::Sha256;

use crate::harness::*;
use crate::sipp::{auth_csv, Scenario};

/// The value after `# label:` in the credentials output (first word).
fn comment_value(out: &str, label: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("# {label}:")))
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{out}"))
        .to_string()
}

/// From `[[trunks]]` to the end: the block to paste.
fn trunk_block(out: &str) -> String {
    let at = out
        .find("[[trunks]]")
        .unwrap_or_else(|| panic!("no [[trunks]] block in:\n{out}"));
    out[at..].to_string()
}

fn hex_md5(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

fn hex_sha256(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write file");
    p.to_string_lossy().into_owned()
}

#[test]
fn credentials_block_makes_a_working_trunk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("absent.toml");
    let missing = missing.to_str().expect("utf-8 path");

    // no config file and no --realm: refused, naming the option
    let (code, _, err) = trunkgate(&["credentials", "--config", missing]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("does not exist") && err.contains("--realm"),
        "{err}"
    );

    let (code, out, err) = trunkgate(&[
        "credentials",
        "--name",
        "issued",
        "--config",
        missing,
        "--realm",
        REALM,
    ]);
    assert_eq!(code, 0, "{err}");
    let password = comment_value(&out, "password");
    let user = comment_value(&out, "username");
    assert_eq!(user, "issued", "default username from --name");
    assert_eq!(password.len(), 32, "{out}");
    assert!(password
        .chars()
        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
    let md5 = hex_md5(&format!("{user}:{REALM}:{password}"));
    let sha = hex_sha256(&format!("{user}:{REALM}:{password}"));
    assert_eq!(comment_value(&out, "HA1 MD5"), md5);
    assert_eq!(comment_value(&out, "HA1 SHA-256"), sha);

    let block = trunk_block(&out);
    assert!(
        !block.contains(&password),
        "plaintext in the block:\n{block}"
    );
    assert!(block.contains(&format!("ha1 = \"{md5}\"")), "{block}");
    assert!(
        block.contains(&format!("ha1_sha256 = \"{sha}\"")),
        "{block}"
    );

    // two runs never issue the same password
    let (_, again, _) = trunkgate(&["credentials", "--config", missing, "--realm", REALM]);
    assert_ne!(comment_value(&again, "password"), password);

    // the block parses, with either algorithm offered
    let cfg = write(
        dir.path(),
        "both.toml",
        &format!(
            "[sip]\nrealm = \"{REALM}\"\ndigest_algorithms = [\"SHA-256\", \"MD5\"]\n\n{block}"
        ),
    );
    let (code, out_ok, err) = trunkgate(&["check-config", "--config", &cfg]);
    assert_eq!(code, 0, "{err}");
    assert!(out_ok.contains("1 trunk (issued)"), "{out_ok}");

    // with a config present: its realm is used, and a clashing name is refused
    let (code, out2, err) = trunkgate(&["credentials", "--name", "second", "--config", &cfg]);
    assert_eq!(code, 0, "{err}");
    assert!(out2.contains(&format!("# realm:            {REALM} (sip.realm of")));
    let (code, _, err) = trunkgate(&["credentials", "--name", "issued", "--config", &cfg]);
    assert_eq!(code, 2);
    assert!(err.contains("exists already"), "{err}");

    // a PBX registering with the issued password gets its 200
    let d = Daemon::start("", &block);
    let (code, _, err) = trunkgate(&[
        "check-config",
        "--config",
        d.config_path().to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{err}");
    let csv = auth_csv(d.dir.path(), &user, &user, &password);
    let run = Scenario::uac("reg_auth.xml", d.sip)
        .args(&["-inf", &csv])
        .run(Duration::from_secs(65));
    d.assert_sipp_ok(&run, "REGISTER with the issued password");
    assert!(!d.log().contains(&password), "password logged");
}

/// A config with a password trunk `pw` and an HA1-only trunk `hashed`.
const PASSWORD: &str = "Pa55-for-the-pbx-7f3a";
const HA1: &str = "0123456789abcdef0123456789abcdef";

fn pbx_config_file(dir: &Path, sip: &str, extra: &str) -> String {
    write(
        dir,
        "pbx.toml",
        &format!(
            "[sip]\nrealm = \"{REALM}\"\n{sip}\n\n{extra}\n\
             [[trunks]]\nname = \"pw\"\nauth_username = \"pw_user\"\npassword = \"{PASSWORD}\"\n\
             max_calls = 12\nallowed_sources = [\"198.51.100.7/32\"]\n\n\
             [[trunks]]\nname = \"hashed\"\nauth_username = \"hashed_user\"\nha1 = \"{HA1}\"\n"
        ),
    )
}

const SIP: &str = "listen = \"127.0.0.1:5080\"\nadvertise = \"192.0.2.10\"\n\
                   min_expires = 120\nmax_expires = 1800\ndefault_expires = 900";

/// The value of a `  Field name:   value` line of the 3CX form.
fn form_field(out: &str, name: &str) -> String {
    out.lines()
        .find_map(|l| l.trim_start().strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no field {name:?} in:\n{out}"))
}

#[test]
fn pbx_config_3cx_lists_the_form_fields() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = pbx_config_file(dir.path(), SIP, "[inbound]\ndid_format = \"national\"\n");
    let (code, out, err) = trunkgate(&["pbx-config", "3cx", "--trunk", "pw", "--config", &cfg]);
    assert_eq!(code, 0, "{err}");
    assert!(err.is_empty(), "no warning expected: {err}");
    let f = |n: &str| form_field(&out, n);
    assert_eq!(f("Registrar/Server/Gateway Hostname or IP"), "192.0.2.10");
    assert_eq!(f("Registrar/Server Port"), "5080");
    assert_eq!(f("Outbound Proxy Hostname or IP"), "192.0.2.10");
    assert_eq!(f("Outbound Proxy Port"), "5080");
    assert_eq!(f("SIP Transport"), "UDP");
    assert_eq!(f("Number of SIM Calls"), "12");
    assert_eq!(f("Authentication ID (aka SIP User ID)"), "pw_user");
    assert_eq!(f("Authentication Password"), PASSWORD);
    assert!(f("Registration").starts_with("Register/Re-register"));
    assert!(
        f("Re-register interval (seconds)").starts_with("900 "),
        "{out}"
    );
    assert!(f("Codec priority").starts_with("G.711 A-law, G.711 U-law"));
    assert_eq!(f("DTMF"), "RFC 2833");
    let dialled = f("Outbound (dialled) numbers");
    for form in ["0501234567", "971501234567", "+971501234567"] {
        assert!(dialled.contains(form), "{dialled}");
    }
    assert!(
        f("Inbound DID (DID/DDI mask)")
            .starts_with("045551234 (inbound.did_format = \"national\")"),
        "{out}"
    );
    assert!(out.contains("198.51.100.7/32"), "allowed source named");
    assert_eq!(
        out.matches(PASSWORD).count(),
        1,
        "password only in its field"
    );

    // HA1-only trunk: neither the hash nor any password, and a pointer to `credentials`
    let (code, out, err) = trunkgate(&["pbx-config", "3cx", "--trunk", "hashed", "--config", &cfg]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        form_field(&out, "Authentication ID (aka SIP User ID)"),
        "hashed_user"
    );
    let pw = form_field(&out, "Authentication Password");
    assert!(pw.contains("trunkgate credentials"), "{pw}");
    assert!(!out.contains(HA1), "HA1 printed:\n{out}");
    assert!(!out.to_ascii_lowercase().contains("ha1"), "{out}");
    assert!(!out.contains(PASSWORD), "another trunk's password printed");
    assert_eq!(
        form_field(&out, "Number of SIM Calls"),
        "500",
        "calls.max_calls"
    );
}

#[test]
fn pbx_config_warns_about_a_wildcard_listen_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = pbx_config_file(dir.path(), "listen = \"0.0.0.0:5060\"", "");
    for pbx in ["3cx", "asterisk"] {
        let (code, out, err) = trunkgate(&["pbx-config", pbx, "--trunk", "pw", "--config", &cfg]);
        assert_eq!(code, 0, "{err}");
        assert!(
            err.contains("warning:") && err.contains("sip.advertise"),
            "{pbx}: {err}"
        );
        assert!(out.contains("TRUNKGATE_IP"), "{pbx}: {out}");
        let wildcard = out
            .lines()
            .filter(|l| !l.contains("NOTE:"))
            .any(|l| l.contains("0.0.0.0"));
        assert!(!wildcard, "{pbx} gives the wildcard as an address: {out}");
        assert!(out.contains("NOTE: sip.listen is 0.0.0.0:5060"), "{out}");
    }
}

/// `[name]` sections of `key = value` lines (`;` comments), in order; names may repeat.
fn ini_sections(text: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut sections: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            sections.push((name.to_string(), Vec::new()));
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not key = value: {line:?}"));
        sections
            .last_mut()
            .unwrap_or_else(|| panic!("{line:?} before any section"))
            .1
            .push((k.trim().to_string(), v.trim().to_string()));
    }
    sections
}

fn section<'a>(
    sections: &'a [(String, Vec<(String, String)>)],
    kind: &'a str,
) -> (&'a str, impl Fn(&str) -> String + 'a) {
    let (name, kv) = sections
        .iter()
        .find(|(_, kv)| kv.iter().any(|(k, v)| k == "type" && v == kind))
        .unwrap_or_else(|| panic!("no type = {kind} section"));
    (name.as_str(), move |key: &str| {
        kv.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {key} in the {kind} section"))
    })
}

#[test]
fn pbx_config_asterisk_is_a_pjsip_section_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = pbx_config_file(dir.path(), SIP, "");
    let (code, out, err) =
        trunkgate(&["pbx-config", "asterisk", "--trunk", "pw", "--config", &cfg]);
    assert_eq!(code, 0, "{err}");
    let s = ini_sections(&out);
    let mut kinds: Vec<String> = s
        .iter()
        .flat_map(|(_, kv)| {
            kv.iter()
                .filter(|(k, _)| k == "type")
                .map(|(_, v)| v.clone())
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        ["aor", "auth", "endpoint", "identify", "registration"],
        "{out}"
    );
    let (reg_name, reg) = section(&s, "registration");
    let (auth_name, auth) = section(&s, "auth");
    let (aor_name, aor) = section(&s, "aor");
    let (ep_name, ep) = section(&s, "endpoint");
    let (_, id) = section(&s, "identify");
    assert_eq!(reg("server_uri"), "sip:192.0.2.10:5080");
    assert_eq!(reg("client_uri"), "sip:pw_user@192.0.2.10:5080");
    assert_eq!(reg("outbound_auth"), auth_name);
    assert_eq!(reg("expiration"), "900");
    assert_eq!(auth("auth_type"), "userpass");
    assert_eq!(auth("username"), "pw_user");
    assert_eq!(auth("password"), PASSWORD);
    assert_eq!(aor("contact"), "sip:192.0.2.10:5080");
    assert_eq!(ep("aors"), aor_name);
    assert_eq!(ep("outbound_auth"), auth_name);
    assert_eq!(ep("context"), "from-trunkgate");
    assert_eq!(ep("disallow"), "all");
    assert_eq!(ep("allow"), "alaw,ulaw");
    assert_eq!(ep("dtmf_mode"), "rfc4733");
    for yes in ["timers", "rtp_symmetric", "force_rport"] {
        assert_eq!(ep(yes), "yes", "{yes}");
    }
    assert_eq!(ep("direct_media"), "no");
    assert_eq!(id("endpoint"), ep_name);
    assert_eq!(id("match"), "192.0.2.10");
    assert_eq!(reg_name, ep_name);
    // the password only in the auth section
    let holders: Vec<&str> = s
        .iter()
        .filter(|(_, kv)| kv.iter().any(|(_, v)| v.contains(PASSWORD)))
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(holders, [auth_name]);
    assert_eq!(out.matches(PASSWORD).count(), 1);

    // HA1-only: a placeholder and a comment, never the hash
    let (code, out, err) = trunkgate(&[
        "pbx-config",
        "asterisk",
        "--trunk",
        "hashed",
        "--config",
        &cfg,
    ]);
    assert_eq!(code, 0, "{err}");
    let s = ini_sections(&out);
    let (_, auth) = section(&s, "auth");
    assert_eq!(auth("username"), "hashed_user");
    assert_eq!(auth("password"), "THE_ISSUED_PASSWORD");
    assert!(out.contains("trunkgate credentials"), "{out}");
    assert!(!out.contains(HA1) && !out.contains(PASSWORD), "{out}");
}

#[test]
fn pbx_config_unknown_trunk_and_bad_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = pbx_config_file(dir.path(), SIP, "");
    for pbx in ["3cx", "asterisk"] {
        let (code, out, err) = trunkgate(&["pbx-config", pbx, "--trunk", "nope", "--config", &cfg]);
        assert_eq!(code, 2, "{pbx}");
        assert!(out.is_empty(), "{out}");
        assert!(
            err.contains("\"nope\"") && err.contains("\"pw\"") && err.contains("\"hashed\""),
            "{err}"
        );
    }
    let bad = write(dir.path(), "bad.toml", "[sip]\nrealm = \"\"\n");
    let (code, _, err) = trunkgate(&["pbx-config", "3cx", "--trunk", "pw", "--config", &bad]);
    assert_eq!(code, 2);
    assert!(err.contains("sip.realm"), "{err}");
}

use super::*;

const GOOD: &str = r#"
[sip]
listen = "127.0.0.1:5070"
realm = "trunk.example.com"

[[trunks]]
name = "pbx-main"
auth_username = "3cx_trunk"
password = "s3cret"
"#;

#[test]
fn good_config_loads_with_defaults() {
    let c = Config::from_toml(GOOD).unwrap();
    assert_eq!(c.sip.min_expires, 60);
    assert_eq!(c.sip.digest_algorithms, ["MD5"]);
    assert!(c.sip.force_rport);
    assert_eq!(c.trunks[0].name, "pbx-main");
    assert!(c.summary().contains("1 trunk (pbx-main)"));
}

#[test]
fn unknown_key_is_an_error_with_line_and_key() {
    let text = GOOD.replace("realm =", "relm = \"x\"\nrealm =");
    let errs = Config::from_toml(&text).unwrap_err();
    assert_eq!(errs.len(), 1);
    let e = &errs[0];
    assert_eq!(e.line, Some(4), "{e}");
    assert!(e.message.contains("unknown field `relm`"), "{e}");
    assert!(e.key.starts_with("sip"), "{e}");
}

#[test]
fn type_error_names_the_key() {
    let text = GOOD.replace("listen = \"127.0.0.1:5070\"", "listen = 5070");
    let errs = Config::from_toml(&text).unwrap_err();
    assert_eq!(errs[0].key, "sip.listen", "{}", errs[0]);
    assert_eq!(errs[0].line, Some(3));
}

#[test]
fn every_semantic_error_is_reported_with_its_line() {
    let text = r#"
[sip]
realm = "r"
min_expires = 600
max_expires = 300
digest_algorithms = ["SHA-256", "SHA-1"]

[[trunks]]
name = "a"
auth_username = "u"
ha1 = "abc"

[[trunks]]
name = "a"
auth_username = "v"
"#;
    let errs = Config::from_toml(text).unwrap_err();
    let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
    for k in [
        "sip.min_expires",
        "sip.default_expires",
        "sip.digest_algorithms[1]",
        "trunks[0].ha1",
        "trunks[0]",
        "trunks[1].name",
        "trunks[1]",
    ] {
        assert!(keys.contains(&k), "{k} missing from {keys:?}");
    }
    let by = |k: &str| errs.iter().find(|e| e.key == k).unwrap();
    assert_eq!(by("sip.min_expires").line, Some(4));
    assert_eq!(by("sip.digest_algorithms[1]").line, Some(6));
    assert_eq!(by("trunks[0].ha1").line, Some(11));
    assert_eq!(by("trunks[1].name").line, Some(14));
}

#[test]
fn secrets_do_not_show_in_debug_output() {
    let c = Config::from_toml(GOOD).unwrap();
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("s3cret"));
    assert!(dbg.contains("***"));
}

#[test]
fn ha1_allows_only_its_own_algorithm() {
    let text = GOOD
        .replace(
            "password = \"s3cret\"",
            "ha1 = \"0123456789abcdef0123456789abcdef\"",
        )
        .replace(
            "realm = ",
            "digest_algorithms = [\"SHA-256\", \"MD5\"]\nrealm = ",
        );
    let errs = Config::from_toml(&text).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert!(errs[0].message.contains("SHA-256"), "{}", errs[0]);
    let c = Config::from_toml(&GOOD.replace(
        "password = \"s3cret\"",
        "ha1 = \"0123456789ABCDEF0123456789abcdef\"",
    ))
    .unwrap();
    let t = &c.trunks[0];
    let ha1 = t.ha1.as_ref().map(|h| h.expose());
    assert_eq!(ha1, Some("0123456789ABCDEF0123456789abcdef"));
    assert!(t.ha1_sha256.is_none() && t.password.is_none());
}

#[test]
fn carrier_errors_name_the_key_and_line() {
    let text = format!(
        "{GOOD}\n[carrier]\nice_servers = [\"http://stun.example\"]\nice_transport_policy = \"relay\"\n\
         [[carrier.accounts]]\nname = \"a\"\nbase_url = \"http://carrier.example\"\n\
         username = \"u\"\npassword = \"p\"\ndomain = \"d.example\"\nmax_calls = 0\n"
    );
    let errs = Config::from_toml(&text).unwrap_err();
    let find = |k: &str| {
        errs.iter()
            .find(|e| e.key == k)
            .unwrap_or_else(|| panic!("no error for {k}: {errs:?}"))
    };
    let url = find("carrier.accounts[0].base_url");
    assert!(url.message.contains("https"), "{url}");
    let url_line = text
        .lines()
        .position(|l| l.starts_with("base_url"))
        .unwrap()
        + 1;
    assert_eq!(url.line, Some(url_line));
    find("carrier.accounts[0].max_calls");
    find("carrier.ice_servers[0]");
    find("carrier.ice_transport_policy");
}

#[test]
fn carrier_needs_accounts_unless_simulated() {
    let errs = Config::from_toml(&format!("{GOOD}\n[carrier]\n")).unwrap_err();
    assert_eq!(errs[0].key, "carrier.accounts");
    let c = Config::from_toml(&format!("{GOOD}\n[carrier]\nsimulate = true\n")).unwrap();
    assert!(c.carrier.unwrap().simulate);
}

#[test]
fn carrier_password_is_hidden_in_debug_output() {
    let c = Config::from_toml(&format!(
        "{GOOD}\n[carrier]\n[[carrier.accounts]]\nname = \"a\"\nbase_url = \"https://c.example\"\n\
         username = \"u\"\npassword = \"carrier-pass-77\"\ndomain = \"d.example\"\n"
    ))
    .unwrap();
    assert!(!format!("{c:?}").contains("carrier-pass-77"));
}

#[test]
fn log_format_is_text_or_json() {
    let c = Config::from_toml(&format!("[log]\nformat = \"json\"\n{GOOD}")).unwrap();
    assert_eq!(c.log.format, LogFormat::Json);
    let c = Config::from_toml(GOOD).unwrap();
    assert_eq!(c.log.format, LogFormat::Text);
    let errs = Config::from_toml(&format!("[log]\nformat = \"xml\"\n{GOOD}")).unwrap_err();
    assert_eq!(errs[0].line, Some(2), "{errs:?}");
    assert!(errs[0].message.contains("json"), "{errs:?}");
}

#[test]
fn cluster_errors_name_the_key_and_line_and_never_the_url() {
    let text = format!(
        "{GOOD}\n[cluster]\nnode = \"a b\"\nredis = \"http://:hunter2secret@10.0.0.7\"\n\
         key_prefix = \"tg:x\"\ncall_lease = \"1s\"\ntrusted_proxies = [\"10.0.0.5/32\"]\n"
    );
    let errs = Config::from_toml(&text).unwrap_err();
    let find = |k: &str| {
        errs.iter()
            .find(|e| e.key == k)
            .unwrap_or_else(|| panic!("no error for {k}: {errs:?}"))
    };
    let redis = find("cluster.redis");
    let line = text.lines().position(|l| l.starts_with("redis")).unwrap() + 1;
    assert_eq!(redis.line, Some(line), "{redis}");
    assert!(
        errs.iter().all(|e| !e.to_string().contains("hunter2")),
        "{errs:?}"
    );
    // with redis, a secret every instance signs nonces with
    assert!(find("cluster.secret").message.contains("required"));
    find("cluster.node");
    find("cluster.key_prefix");
    find("cluster.call_lease");

    let text = format!(
        "{GOOD}\n[cluster]\nredis = \"redis://10.0.0.7:6379\"\nsecret = \"0123456789abcdef\"\n\
         trusted_proxies = [\"10.0.0.5/32\"]\n"
    );
    let c = Config::from_toml(&text).unwrap();
    assert_eq!(c.cluster.trusted_proxies, ["10.0.0.5/32".parse().unwrap()]);
    assert_eq!(c.cluster.node_name(c.sip.listen, None), "127.0.0.1:5070");
    // on every interface, with Redis: a name is needed, or an advertised address stands for it
    let wild = text.replace("127.0.0.1:5070", "0.0.0.0:5060");
    let errs = Config::from_toml(&wild).unwrap_err();
    assert!(errs.iter().any(|e| e.key == "cluster.node"), "{errs:?}");
    let named =
        Config::from_toml(&wild.replace("[cluster]\n", "[cluster]\nnode = \"gw-a\"\n")).unwrap();
    assert_eq!(named.cluster.node_name(named.sip.listen, None), "gw-a");
    let adv = wild.replace("realm =", "advertise = \"192.0.2.5\"\nrealm =");
    let c = Config::from_toml(&adv).unwrap();
    assert_eq!(
        c.cluster.node_name(c.sip.listen, c.sip.advertise),
        "192.0.2.5:5060"
    );
    let short = text.replace("0123456789abcdef", "short");
    let errs = Config::from_toml(&short).unwrap_err();
    assert!(errs.iter().any(|e| e.key == "cluster.secret"), "{errs:?}");
}

//! Table-driven tests of the number policy, caller-id selection, configuration and the
//! admin report.

use super::*;
use std::sync::OnceLock;

/// The policies the table refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pol {
    /// `NumbersConfig::default()`.
    Default,
    /// AE, GB, US and non-geographic numbers allowed.
    Intl,
    National,
    /// National output, GB allowed.
    NationalIntl,
    Digits,
    NoEmergency,
    ShortCodes,
    Premium,
    /// Blocked `+97156`, allow-list `+97150`, `+97156`, `+9714`.
    Prefixes,
}

fn config(p: Pol) -> NumbersConfig {
    let strings = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let d = NumbersConfig::default();
    match p {
        Pol::Default => d,
        Pol::Intl => NumbersConfig {
            allowed_countries: strings(&["AE", "GB", "US", "001"]),
            allowed_types: vec![
                NumberKind::Mobile,
                NumberKind::FixedLine,
                NumberKind::TollFree,
                NumberKind::Voip,
            ],
            ..d
        },
        Pol::National => NumbersConfig {
            output_format: OutputFormat::National,
            ..d
        },
        Pol::NationalIntl => NumbersConfig {
            output_format: OutputFormat::National,
            allowed_countries: strings(&["AE", "GB"]),
            ..d
        },
        Pol::Digits => NumbersConfig {
            output_format: OutputFormat::Digits,
            ..d
        },
        Pol::NoEmergency => NumbersConfig {
            allow_emergency: false,
            ..d
        },
        Pol::ShortCodes => NumbersConfig {
            allow_short_codes: true,
            ..d
        },
        Pol::Premium => NumbersConfig {
            allowed_types: vec![NumberKind::Mobile, NumberKind::PremiumRate],
            ..d
        },
        Pol::Prefixes => NumbersConfig {
            blocked_prefixes: strings(&["+97156"]),
            allowed_prefixes: strings(&["+97150", "97156", "+9714"]),
            ..d
        },
    }
}

fn policy(p: Pol) -> &'static NumberPolicy {
    const ALL: [Pol; 9] = [
        Pol::Default,
        Pol::Intl,
        Pol::National,
        Pol::NationalIntl,
        Pol::Digits,
        Pol::NoEmergency,
        Pol::ShortCodes,
        Pol::Premium,
        Pol::Prefixes,
    ];
    static POLICIES: OnceLock<Vec<NumberPolicy>> = OnceLock::new();
    let all = POLICIES.get_or_init(|| {
        warm_up();
        ALL.iter()
            .map(|p| NumberPolicy::new(&config(*p)).expect("test config is valid"))
            .collect()
    });
    let i = ALL.iter().position(|q| *q == p).unwrap_or(0);
    &all[i]
}

#[derive(Debug)]
enum Want {
    /// Canonical form, type, region.
    Allow(&'static str, NumberKind, &'static str),
    /// Passed as dialled.
    AsDialled(&'static str, Special),
    /// SIP code and a fragment of the reason.
    Refuse(u16, &'static str),
}

use NumberKind::*;
use Pol::*;
use Want::*;

const MOBILE: Want = Allow("+971501234567", Mobile, "AE");
const DUBAI: Want = Allow("+97143456789", FixedLine, "AE");
const BAD: Want = Refuse(484, "");
const NOT_NUMBER: Want = Refuse(484, "not a number");

#[rustfmt::skip]
const CASES: &[(&str, Pol, Want)] = &[
    // Every written form of one mobile number.
    ("0501234567", Default, MOBILE),
    ("501234567", Default, MOBILE),
    ("971501234567", Default, MOBILE),
    ("+971501234567", Default, MOBILE),
    ("00971501234567", Default, MOBILE),
    ("+971 50 123 4567", Default, MOBILE),
    ("tel:+971-50-123-4567", Default, MOBILE),
    ("(050) 123-4567", Default, MOBILE),
    ("050.123.4567", Default, MOBILE),
    ("+9710501234567", Default, MOBILE),
    ("sip:0501234567@pbx.example.com;user=phone", Default, MOBILE),
    ("sips:+971501234567@carrier.example:5061;transport=tls", Default, MOBILE),
    ("SIP:0501234567@HOST", Default, MOBILE),
    ("sip:0501234567:secret@host", Default, MOBILE),
    ("\"Alice <x>\" <sip:+971501234567@pbx;user=phone>;tag=x", Default, MOBILE),
    ("Alice <tel:+971501234567>", Default, MOBILE),
    ("<sip:%2B971501234567@h>", Default, MOBILE),
    ("sip:+971501234567;phone-context=+971@pbx;user=phone", Default, MOBILE),
    ("tel:0501234567;phone-context=+971", Default, MOBILE),
    ("tel:0501234567;phone-context=pbx.example.com", Default, MOBILE),
    ("tel:+971501234567;ext=12", Default, MOBILE),
    // Landlines.
    ("043456789", Default, DUBAI),
    ("+97143456789", Default, DUBAI),
    ("04 345 6789", Default, DUBAI),
    ("0097143456789", Default, DUBAI),
    ("97143456789", Default, DUBAI),
    // National reading first: a Fujairah line, not +971 80012 toll-free.
    ("97180012", Default, Allow("+97197180012", FixedLine, "AE")),
    ("97123456", Default, Allow("+97197123456", FixedLine, "AE")),
    ("971800123", Default, Allow("+971800123", TollFree, "AE")),
    // Output formats.
    ("+971501234567", National, Allow("0501234567", Mobile, "AE")),
    ("00971 4 345 6789", National, Allow("043456789", FixedLine, "AE")),
    ("800123", National, Allow("800123", TollFree, "AE")),
    ("0501234567", Digits, Allow("971501234567", Mobile, "AE")),
    ("+442079460000", NationalIntl, Allow("00442079460000", FixedLine, "GB")),
    // Invalid lengths and ranges.
    ("05012345", Default, BAD),
    ("050123456789", Default, BAD),
    ("+97150123456789", Default, BAD),
    ("400123456789", Default, BAD),
    ("8001234567890", Default, Refuse(484, "too long")),
    ("3456789", Default, BAD),
    ("200123456", Default, BAD),
    ("12", Default, Refuse(484, "too short")),
    ("123456789012345678901", Default, Refuse(484, "too long")),
    ("0971501234567", Default, BAD),
    ("+999", Default, BAD),
    // Number types under the default policy.
    ("800123", Default, Allow("+971800123", TollFree, "AE")),
    ("+971 800 123 456", Default, Allow("+971800123456", TollFree, "AE")),
    ("600522222", Default, Allow("+971600522222", Uan, "AE")),
    ("700012345", Default, Allow("+971700012345", SharedCost, "AE")),
    ("900234567", Default, Refuse(403, "premium-rate destinations are not allowed")),
    ("+971900012345", Default, Refuse(403, "premium-rate")),
    ("900234567", Premium, Allow("+971900234567", PremiumRate, "AE")),
    ("043456789", Premium, Refuse(403, "fixed-line destinations are not allowed")),
    // Foreign numbers under the default policy: refused however they are written.
    ("+442079460000", Default, Refuse(403, "destinations in GB are not allowed")),
    ("00442079460000", Default, Refuse(403, "destinations in GB are not allowed")),
    ("tel:07400123456;phone-context=+44", Default, Refuse(403, "GB")),
    ("+12015550123", Default, Refuse(403, "destinations in US are not allowed")),
    ("+18765551234", Default, Refuse(403, "destinations in JM are not allowed")),
    ("+870773111111", Default, Refuse(403, "non-geographic destinations (+870)")),
    ("+8823421234", Default, Refuse(403, "non-geographic destinations (+882)")),
    ("+39 02 1234 5678", Default, Refuse(403, "destinations in IT")),
    // ... and under a policy that lists them.
    ("+442079460000", Intl, Allow("+442079460000", FixedLine, "GB")),
    ("00447400123456", Intl, Allow("+447400123456", Mobile, "GB")),
    ("+12015550123", Intl, Allow("+12015550123", FixedLineOrMobile, "US")),
    ("+883510012345", Intl, Allow("+883510012345", Voip, "001")),
    ("+18765551234", Intl, Refuse(403, "destinations in JM")),
    ("+447911123456", Intl, Refuse(403, "destinations in GG")),
    ("+449012345678", Intl, Refuse(403, "premium-rate")),
    ("+447012345678", Intl, Refuse(403, "personal-number destinations")),
    // Prefix lists, on the E.164 form.
    ("0561234567", Prefixes, Refuse(403, "destination prefix +97156 is blocked")),
    ("0521234567", Prefixes, Refuse(403, "not in the allowed prefixes")),
    ("0501234567", Prefixes, MOBILE),
    ("043456789", Prefixes, DUBAI),
    ("999", Prefixes, AsDialled("999", Special::Emergency)),
    // Emergency numbers and short codes: as dialled, or refused.
    ("999", Default, AsDialled("999", Special::Emergency)),
    ("112", Default, AsDialled("112", Special::Emergency)),
    ("tel:998", Default, AsDialled("998", Special::Emergency)),
    ("sip:997@pbx;user=phone", Default, AsDialled("997", Special::Emergency)),
    ("999", NoEmergency, Refuse(403, "emergency calls are not allowed")),
    ("901", Default, Refuse(403, "short codes are not allowed")),
    ("901", ShortCodes, AsDialled("901", Special::ShortCode)),
    ("999", National, AsDialled("999", Special::Emergency)),
    // A dial rule that prefixed the country code must not fail an emergency call.
    ("+971999", Default, AsDialled("999", Special::Emergency)),
    ("00971 112", Digits, AsDialled("112", Special::Emergency)),
    ("+971999", NoEmergency, Refuse(403, "emergency calls are not allowed")),
    ("+971901", ShortCodes, BAD),
    ("+44999", Default, BAD),
    // Toll-fraud shapes and garbage.
    ("", Default, Refuse(484, "empty")),
    ("   ", Default, Refuse(484, "empty")),
    ("sip:@host", Default, Refuse(484, "empty")),
    ("+", Default, Refuse(484, "empty")),
    ("sip:host.example", Default, Refuse(484, "no user part")),
    ("mailto:a@b", Default, Refuse(484, "not a SIP or tel URI")),
    ("\"Bob\" sip:0501234567@h", Default, Refuse(484, "malformed")),
    ("<sip:0501234567@h", Default, Refuse(484, "malformed")),
    ("sip:0501234567%2@h", Default, Refuse(484, "malformed")),
    ("sip:alice@host", Default, NOT_NUMBER),
    ("050ABCDEFG", Default, NOT_NUMBER),
    ("0501234567x12", Default, NOT_NUMBER),
    ("*21#", Default, NOT_NUMBER),
    ("#31#0501234567", Default, NOT_NUMBER),
    ("sip:0501234567%23@host", Default, NOT_NUMBER),
    ("++971501234567", Default, NOT_NUMBER),
    ("+971+501234567", Default, NOT_NUMBER),
    ("0501234567\r\nX-Evil: 1", Default, BAD),
    ("0501234567\r\n", Default, MOBILE),
    ("050 123\n4567", Default, NOT_NUMBER),
    ("\u{0660}\u{0665}\u{0660}\u{0661}\u{0662}\u{0663}\u{0664}\u{0665}\u{0666}\u{0667}", Default, NOT_NUMBER),
    ("+0501234567", Default, BAD),
    ("+97100441234567890", Default, BAD),
    ("971 00 44 20 7946 0000", Default, BAD),
    ("0044 20 7946 0000 999", Default, BAD),
    ("000442079460000", Default, BAD),
    ("sip:0501234567%+1@h", Default, Refuse(484, "malformed")),
    ("tel:2015550123;phone-context=+1-201", Default, Refuse(403, "destinations in US")),
    ("tel:0501234567;phone-context=+999", Default, Refuse(484, "unknown country code")),
];

#[test]
fn destination_table() {
    let mut failures = Vec::new();
    for (input, pol, want) in CASES {
        let got = policy(*pol).check(input);
        let ok = match (want, &got) {
            (Allow(canonical, kind, region), Verdict::Allowed(d)) => {
                d.canonical == *canonical
                    && d.kind == *kind
                    && d.region == *region
                    && d.special.is_none()
                    && d.e164.starts_with('+')
            }
            (AsDialled(digits, special), Verdict::Allowed(d)) => {
                d.canonical == *digits && d.e164 == *digits && d.special == Some(*special)
            }
            (Refuse(code, fragment), Verdict::Refused(r)) => {
                r.code == *code
                    && r.reason.contains(fragment)
                    && (r.code == 403) == r.canonical.is_some()
            }
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "{input:?} under {pol:?}: want {want:?}, got {got:?}"
            ));
        }
    }
    assert!(CASES.len() >= 40);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn refusal_reasons_are_header_safe() {
    for (input, pol, _) in CASES {
        if let Verdict::Refused(r) = policy(*pol).check(input) {
            let safe = r
                .reason
                .bytes()
                .all(|b| (b' '..=b'~').contains(&b) && b != b'"');
            assert!(safe, "{input:?}: {:?}", r.reason);
            let is_484 = r.cause == RefusalCause::InvalidNumber;
            assert_eq!(is_484, r.code == 484, "{input:?}");
        }
    }
}

#[test]
fn allowed_numbers_are_stable_under_renormalisation() {
    for (input, pol, _) in CASES {
        let p = policy(*pol);
        if let Verdict::Allowed(d) = p.check(input) {
            for again in [&d.e164, &d.canonical] {
                match p.check(again) {
                    Verdict::Allowed(d2) => assert_eq!(d2, d, "{input:?} -> {again:?}"),
                    other => panic!("{input:?} -> {again:?} gave {other:?}"),
                }
            }
        }
    }
}

#[test]
fn arbitrary_input_never_panics_nor_passes_junk() {
    // Deterministic pseudo-random strings over the characters that matter.
    let alphabet: Vec<char> = "0123456789+ -().*#:;@<>\"%,abcsiptel=x\u{0660}"
        .chars()
        .collect();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        usize::try_from(state % n as u64).unwrap_or(0)
    };
    let p = policy(Intl);
    for _ in 0..3000 {
        let len = next(24);
        let s: String = (0..len).map(|_| alphabet[next(alphabet.len())]).collect();
        if let Verdict::Allowed(d) = p.check(&s) {
            let digits = d.e164.trim_start_matches('+');
            assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{s:?} -> {d:?}");
            assert!(
                d.special.is_some() || d.e164.starts_with('+'),
                "{s:?} -> {d:?}"
            );
        }
    }
}

/// PAI, RPID, From, Privacy, default caller id; policy; wanted number, withheld, source.
type CidRow = (
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
    Pol,
    Option<&'static str>,
    bool,
    CallerIdSource,
);

const AUTH_ID_FROM: &str = "\"Trunk\" <sip:a8f3k2x@carrier.example>;tag=9";
const ANONYMOUS_FROM: &str = "\"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=1";
const PAI_MOBILE: &str = "<sip:+971501234567@pbx>";

#[rustfmt::skip]
const CALLER_IDS: &[CidRow] = {
    use CallerIdSource as S;
    &[
        // Source order: PAI, then RPID, then From, then the trunk default.
        (Some(PAI_MOBILE), None, Some(AUTH_ID_FROM), None, None, Default, Some("+971501234567"), false, S::Pai),
        (Some("<sip:alice@pbx>, <tel:+97143456789>"), None, None, None, None, Default, Some("+97143456789"), false, S::Pai),
        (Some("<sip:alice@pbx>"), Some("\"A\" <sip:0501234567@pbx>;party=calling;screen=yes"), None, None, None, Default, Some("+971501234567"), false, S::Rpid),
        (None, Some("<sip:0509999999@pbx>;party=called"), Some("<sip:043456789@pbx>;tag=1"), None, None, Default, Some("+97143456789"), false, S::From),
        (None, None, Some("\"0501234567\" <sip:0501234567@pbx>;tag=1"), None, None, National, Some("0501234567"), false, S::From),
        // 3CX's authentication id in From is no number: the trunk default is used.
        (None, None, Some(AUTH_ID_FROM), None, Some("043456789"), Default, Some("+97143456789"), false, S::Default),
        (None, None, Some("<sip:12345678@carrier>"), None, Some("+971 4 345 6789"), Digits, Some("97143456789"), false, S::Default),
        (None, None, Some(AUTH_ID_FROM), None, None, Default, None, false, S::None),
        (None, None, Some(AUTH_ID_FROM), None, Some("not-a-number"), Default, None, false, S::None),
        // Not subject to the destination policy: a foreign or premium caller id is a number.
        (Some("<sip:+447400123456@pbx>"), None, None, None, None, Default, Some("+447400123456"), false, S::Pai),
        (Some("<sip:900234567@pbx>"), None, None, None, None, Default, Some("+971900234567"), false, S::Pai),
        // Privacy.
        (Some(PAI_MOBILE), None, None, Some("id"), None, Default, Some("+971501234567"), true, S::Pai),
        (Some(PAI_MOBILE), None, None, Some("ID;Header"), None, Default, Some("+971501234567"), true, S::Pai),
        (Some(PAI_MOBILE), None, None, Some("none"), None, Default, Some("+971501234567"), false, S::Pai),
        (Some(PAI_MOBILE), None, None, Some("header"), None, Default, Some("+971501234567"), false, S::Pai),
        (None, Some("<sip:+971501234567@pbx>;privacy=full"), None, None, None, Default, Some("+971501234567"), true, S::Rpid),
        (None, Some("<sip:+971501234567@pbx>;privacy=off"), None, None, None, Default, Some("+971501234567"), false, S::Rpid),
        (Some(PAI_MOBILE), None, Some(ANONYMOUS_FROM), None, None, Default, Some("+971501234567"), true, S::Pai),
        (None, None, None, Some("id"), Some("0501234567"), Default, Some("+971501234567"), true, S::Default),
    ]
};

#[test]
fn caller_id_table() {
    for (i, row) in CALLER_IDS.iter().enumerate() {
        let (pai, rpid, from, privacy, default, pol, number, withheld, source) = *row;
        let input = CallerIdInput {
            p_asserted_identity: pai,
            remote_party_id: rpid,
            from,
            privacy,
        };
        let got = policy(pol).caller_id(&input, default);
        let want = CallerId {
            number: number.map(str::to_owned),
            withheld,
            source,
        };
        assert_eq!(got, want, "caller id case {i}: {input:?}");
    }
}

#[test]
fn config_from_toml_defaults_and_unknown_fields() {
    let empty: NumbersConfig = toml::from_str("").expect("empty section");
    assert_eq!(empty, NumbersConfig::default());
    assert!(empty.validate().is_empty());
    let cfg: NumbersConfig = toml::from_str(
        r#"
        region = "AE"
        output_format = "national"
        allowed_types = ["mobile", "fixed_line", "toll_free", "uan", "shared_cost", "premium_rate",
            "voip", "personal_number", "pager", "voicemail", "fixed_line_or_mobile", "unknown"]
        allowed_countries = ["AE", "GB"]
        blocked_prefixes = ["+97190"]
        allowed_prefixes = []
        emergency_numbers = ["999"]
        allow_emergency = false
        short_codes = ["901", "181"]
        allow_short_codes = true
        "#,
    )
    .expect("full section");
    assert_eq!(cfg.output_format, OutputFormat::National);
    assert_eq!(cfg.allowed_types.len(), 12);
    assert!(!cfg.allow_emergency && cfg.allow_short_codes);
    assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
    for bad in [
        "regoin = \"AE\"",
        "output_format = \"E164\"",
        "allowed_types = [\"premium\"]",
    ] {
        assert!(toml::from_str::<NumbersConfig>(bad).is_err(), "{bad}");
    }
    assert!(toml::from_str::<NumbersOverride>("allow_emergancy = true").is_err());
}

#[test]
fn override_replaces_only_what_it_sets() {
    let base = NumbersConfig::default();
    let o: NumbersOverride =
        toml::from_str("allowed_countries = [\"AE\", \"GB\"]\noutput_format = \"digits\"")
            .expect("override");
    let merged = base.with_override(&o);
    assert_eq!(merged.allowed_countries, ["AE", "GB"]);
    assert_eq!(merged.output_format, OutputFormat::Digits);
    assert_eq!(merged.allowed_types, base.allowed_types);
    assert_eq!(merged.emergency_numbers, base.emergency_numbers);
    assert_eq!(base.with_override(&NumbersOverride::default()), base);
    let p = NumberPolicy::new(&merged).expect("valid");
    assert!(
        matches!(p.check("+442079460000"), Verdict::Allowed(d) if d.canonical == "442079460000")
    );
}

#[test]
fn validate_reports_key_paths() {
    let strings = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let cfg = NumbersConfig {
        region: "ae".to_owned(),
        allowed_countries: strings(&["AE", "ZZ", "001"]),
        blocked_prefixes: strings(&["+97190", "90x"]),
        allowed_prefixes: strings(&["0501"]),
        emergency_numbers: strings(&["999", "9 9"]),
        short_codes: strings(&["999"]),
        ..NumbersConfig::default()
    };
    let errors = cfg.validate();
    let keys: Vec<&str> = errors.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "region",
            "allowed_countries[1]",
            "blocked_prefixes[1]",
            "allowed_prefixes[0]",
            "emergency_numbers[1]",
            "short_codes[0]"
        ],
        "{errors:?}"
    );
    assert!(errors[0].1.contains("upper case"), "{errors:?}");
    let region_001 = NumbersConfig {
        region: "001".to_owned(),
        ..NumbersConfig::default()
    };
    assert_eq!(region_001.validate().len(), 1);
    match NumberPolicy::new(&cfg) {
        Err(NumbersError::InvalidConfig(e)) => assert_eq!(e, errors),
        Ok(_) => panic!("invalid config accepted"),
    }
}

#[test]
fn policy_is_shareable() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<NumberPolicy>();
    let p = std::sync::Arc::new(NumberPolicy::new(&NumbersConfig::default()).expect("valid"));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let p = p.clone();
            std::thread::spawn(move || matches!(p.check("0501234567"), Verdict::Allowed(_)))
        })
        .collect();
    for t in threads {
        assert!(t.join().unwrap_or(false));
    }
}

#[test]
fn report_prints_one_line_per_input() {
    let inputs: Vec<String> = ["0501234567", "900234567", "+971 4 345 6789", "x"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let mut out = Vec::new();
    let all = report(policy(Default), &inputs, &mut out).expect("write to Vec");
    assert!(!all);
    let text = String::from_utf8(out).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    let words = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        words(lines[0]),
        ["\"0501234567\"", "+971501234567", "mobile", "AE", "allowed"]
    );
    assert!(
        lines[1].ends_with("refused 403 premium-rate destinations are not allowed"),
        "{text}"
    );
    assert_eq!(
        words(lines[1])[..4],
        ["\"900234567\"", "+971900234567", "premium_rate", "AE"]
    );
    assert!(
        lines[2].starts_with("\"+971 4 345 6789\"  +97143456789 "),
        "{text}"
    );
    assert_eq!(
        words(lines[3])[..6],
        ["\"x\"", "-", "-", "-", "refused", "484"]
    );
    // The verdicts line up.
    let column = |l: &str| {
        l.find(" allowed")
            .into_iter()
            .chain(l.find(" refused"))
            .min()
    };
    assert!(
        lines.iter().all(|l| column(l) == column(lines[0])),
        "{text}"
    );
    let mut out = Vec::new();
    let ok = report(policy(Default), &inputs[..1], &mut out).expect("write to Vec");
    assert!(ok);
}

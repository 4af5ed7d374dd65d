//! Which script an outbound call plays, chosen from the dialled number, and the script itself
//! as data: a list of (delay, action) steps. No I/O and no clock here; `outbound` runs the
//! steps.

use std::time::Duration;

use super::config::BehaviourConfig;
use super::media::MediaMode;

/// What the far end does with a call to a given number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Ring, answer, echo (the default).
    Answer,
    Busy,
    NoAnswer,
    Reject,
    Tone,
    EarlyMedia,
}

/// One thing the simulated far end does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Trying,
    Ringing,
    /// `sessionProgress` with a provisional answer SDP.
    SessionProgress,
    /// `respondCallUpdate` with the final answer SDP.
    Answer(MediaMode),
    /// `callEnd` with a SIP status code.
    End {
        code: i64,
        reason: &'static str,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Wait this long after the previous step.
    pub delay: Duration,
    pub action: Action,
}

/// The E.164 form of a dialled number given as a SIP/tel URI or a bare number:
/// `sip:+971501234567@d;user=phone` → `+971501234567`; `00971...` and `971...` gain the `+`.
/// `None` when there are no digits to speak of.
pub fn normalise_number(to: &str) -> Option<String> {
    let s = to.trim();
    let s = s.strip_prefix('<').unwrap_or(s);
    let s = s.strip_suffix('>').unwrap_or(s);
    let s = ["sips:", "sip:", "tel:"]
        .iter()
        .find_map(|p| s.strip_prefix(p))
        .unwrap_or(s);
    let user = s.split(['@', ';', '?']).next().unwrap_or("");
    let cleaned: String = user
        .chars()
        .filter(|c| !matches!(c, '-' | '.' | ' ' | '(' | ')'))
        .collect();
    let digits = if let Some(d) = cleaned.strip_prefix('+') {
        d
    } else if let Some(d) = cleaned.strip_prefix("00") {
        d
    } else {
        cleaned.as_str()
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(format!("+{digits}"))
}

/// The behaviour configured for the number in `to`; the default when it is in no list.
pub fn behaviour_for(cfg: &BehaviourConfig, to: &str) -> Behaviour {
    let Some(number) = normalise_number(to) else {
        return Behaviour::Answer;
    };
    let listed = |list: &[String]| {
        list.iter()
            .any(|n| normalise_number(n).as_deref() == Some(number.as_str()))
    };
    if listed(&cfg.busy) {
        Behaviour::Busy
    } else if listed(&cfg.no_answer) {
        Behaviour::NoAnswer
    } else if listed(&cfg.reject) {
        Behaviour::Reject
    } else if listed(&cfg.tone) {
        Behaviour::Tone
    } else if listed(&cfg.early_media) {
        Behaviour::EarlyMedia
    } else {
        Behaviour::Answer
    }
}

/// The steps an outbound call to a number with this behaviour goes through.
pub fn outbound_steps(b: Behaviour, ring_delay: Duration, answer_delay: Duration) -> Vec<Step> {
    let step = |delay, action| Step { delay, action };
    let mut steps = vec![step(Duration::ZERO, Action::Trying)];
    match b {
        Behaviour::Reject => steps.push(step(
            ring_delay,
            Action::End {
                code: 603,
                reason: "Decline",
            },
        )),
        Behaviour::NoAnswer => steps.push(step(ring_delay, Action::Ringing)),
        Behaviour::Busy => {
            steps.push(step(ring_delay, Action::Ringing));
            steps.push(step(
                answer_delay,
                Action::End {
                    code: 486,
                    reason: "Busy Here",
                },
            ));
        }
        Behaviour::Answer | Behaviour::Tone => {
            steps.push(step(ring_delay, Action::Ringing));
            let mode = if b == Behaviour::Tone {
                MediaMode::Tone
            } else {
                MediaMode::Echo
            };
            steps.push(step(answer_delay, Action::Answer(mode)));
        }
        Behaviour::EarlyMedia => {
            steps.push(step(ring_delay, Action::Ringing));
            steps.push(step(Duration::ZERO, Action::SessionProgress));
            steps.push(step(answer_delay, Action::Answer(MediaMode::Echo)));
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BehaviourConfig {
        BehaviourConfig {
            busy: vec!["+971500000486".into()],
            no_answer: vec!["+971500000480".into()],
            reject: vec!["00971500000603".into()],
            tone: vec!["971500000777".into()],
            early_media: vec!["+971500000183".into()],
            ..BehaviourConfig::default()
        }
    }

    #[test]
    fn numbers_are_taken_from_uris() {
        for (input, want) in [
            ("sip:+971501234567@ims.example", Some("+971501234567")),
            ("<sip:+971501234567@d;user=phone>", Some("+971501234567")),
            ("sips:00971501234567@d", Some("+971501234567")),
            ("tel:+971-50-123-4567", Some("+971501234567")),
            ("971501234567", Some("+971501234567")),
            ("sip:alice@d", None),
            ("sip:@d", None),
            ("", None),
        ] {
            assert_eq!(normalise_number(input).as_deref(), want, "{input}");
        }
    }

    #[test]
    fn each_list_selects_its_behaviour() {
        let c = cfg();
        for (to, want) in [
            ("sip:+971500000486@d", Behaviour::Busy),
            ("sip:+971500000480@d", Behaviour::NoAnswer),
            ("sip:+971500000603@d", Behaviour::Reject),
            ("sip:+971500000777@d", Behaviour::Tone),
            ("sip:+971500000183@d", Behaviour::EarlyMedia),
            ("sip:+971501234567@d", Behaviour::Answer),
            ("sip:not-a-number@d", Behaviour::Answer),
        ] {
            assert_eq!(behaviour_for(&c, to), want, "{to}");
        }
    }

    #[test]
    fn scripts_follow_the_model() {
        let r = Duration::from_millis(500);
        let a = Duration::from_millis(300);
        let actions = |b| {
            outbound_steps(b, r, a)
                .into_iter()
                .map(|s| s.action)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            actions(Behaviour::Answer),
            vec![
                Action::Trying,
                Action::Ringing,
                Action::Answer(MediaMode::Echo)
            ]
        );
        assert_eq!(
            actions(Behaviour::Busy),
            vec![
                Action::Trying,
                Action::Ringing,
                Action::End {
                    code: 486,
                    reason: "Busy Here"
                }
            ]
        );
        assert_eq!(
            actions(Behaviour::Reject),
            vec![
                Action::Trying,
                Action::End {
                    code: 603,
                    reason: "Decline"
                }
            ]
        );
        assert_eq!(
            actions(Behaviour::NoAnswer),
            vec![Action::Trying, Action::Ringing]
        );
        assert_eq!(
            actions(Behaviour::Tone).last(),
            Some(&Action::Answer(MediaMode::Tone))
        );
        assert_eq!(
            actions(Behaviour::EarlyMedia),
            vec![
                Action::Trying,
                Action::Ringing,
                Action::SessionProgress,
                Action::Answer(MediaMode::Echo)
            ]
        );
        let steps = outbound_steps(Behaviour::Answer, r, a);
        assert_eq!(steps[0].delay, Duration::ZERO);
        assert_eq!(steps[1].delay, r);
        assert_eq!(steps[2].delay, a);
    }
}

//! The wire format of the broadcast server, and the names it accepts.
//!
//! Every frame the server sends is one JSON object:
//! `{"channel":"general","seq":12,"from":"ada","text":"hi","ts":1718000000000}`.
//! `seq` counts per channel from 1, so a client can see gaps and order;
//! `ts` is milliseconds since the Unix epoch. A notice from the server about
//! a client's own lag adds `"missed": N` (and uses `seq` 0, as it is not
//! part of the channel's sequence). The seed (Example 5) sends bare strings
//! such as `"User message: hi"`, which a browser cannot tell apart from a
//! ticker event or order.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Who the server signs its own notices as.
pub const SERVER_NAME: &str = "server";
/// Who the per-channel ticker (the stand-in for Redis or Kafka) signs as.
pub const TICKER_NAME: &str = "ticker";
/// Longest channel or user name accepted.
pub const MAX_NAME_LEN: usize = 64;

/// One broadcast frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// The channel it was published on.
    pub channel: String,
    /// Position in the channel's sequence (1, 2, ...); 0 for server notices.
    pub seq: u64,
    /// The sender's name, [`SERVER_NAME`] or [`TICKER_NAME`].
    pub from: String,
    /// The text as the sender wrote it.
    pub text: String,
    /// Milliseconds since the Unix epoch when the server published it.
    pub ts: u64,
    /// For lag notices: how many messages this client missed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed: Option<u64>,
}

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// True for 1-64 characters of `a-z A-Z 0-9 - _ .`: safe in a URL path, a
/// log line and an HTML attribute, so nothing downstream has to escape it.
pub fn is_valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_ms_is_the_wall_clock_in_milliseconds() {
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let now = now_ms();
        let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        assert!(u128::from(now) >= before.as_millis() && u128::from(now) <= after.as_millis());
    }

    #[test]
    fn names_are_short_url_safe_words() {
        for good in ["general", "room-1", "a_b.c", &"x".repeat(64)] {
            assert!(is_valid_name(good), "{good}");
        }
        for bad in [
            "",
            "with space",
            "slash/",
            "ünicode",
            "<script>",
            &"x".repeat(65),
        ] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn lag_notices_carry_missed_and_others_do_not() {
        let mut message = ChatMessage {
            channel: "c".into(),
            seq: 1,
            from: "a".into(),
            text: "t".into(),
            ts: 5,
            missed: None,
        };
        let plain = serde_json::to_string(&message).unwrap();
        assert_eq!(
            plain,
            r#"{"channel":"c","seq":1,"from":"a","text":"t","ts":5}"#
        );
        message.missed = Some(3);
        assert!(
            serde_json::to_string(&message)
                .unwrap()
                .ends_with(r#""missed":3}"#)
        );
    }
}
